"""Review 40a (a first-time user): M1, ``care demo --out /proc/nope/report`` ran the whole 2-minute
demo and then failed without its summary (os.access said /proc was writable); L9, an unreachable
``--api-url`` printed a promise and a failed clean-up before the error."""

from __future__ import annotations

import time

import pytest

from care_flows.cli import main


def test_an_out_folder_that_cannot_be_made_is_refused_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    t = time.monotonic()
    assert main(["demo", "--out", "/proc/nope/report"]) == 2
    out, err = capsys.readouterr()
    assert err == "error: --out /proc/nope/report cannot be written (No such file or directory); give a folder you may write to\n"
    assert "Starting a local Prefect server" not in out and time.monotonic() - t < 30


def test_an_unreachable_api_is_one_error_line_without_promises_or_clean_up(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--api-url", "http://127.0.0.1:1/api"]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: cannot reach the Prefect API at http://127.0.0.1:1/api (connection refused)") and err.count("\n") == 1
    assert "Using the Prefect API" not in out and "clean-up" not in out and "cancelled 0" not in out, out


def test_the_cost_plot_compares_a_realized_run_with_the_same_run_time_at_home(tmp_path, monkeypatch) -> None:
    """L7: realized bars stood next to the planned baseline only, so a deferral that ran 4 minutes longer
    than planned looked worse than not deferring (7.47 g vs 7.23 g), while the table said 5 % saved."""
    import matplotlib.axes

    from care_flows.demo.report import plot_carbon_cost

    drawn: dict[str, list[float]] = {}
    real_bar = matplotlib.axes.Axes.bar

    def bar(self, x, height, *a, label=None, **k):  # noqa: ANN001, ANN202
        drawn.setdefault(label, []).extend(list(height))
        return real_bar(self, x, height, *a, label=label, **k)

    monkeypatch.setattr(matplotlib.axes.Axes, "bar", bar)
    row = {"scenario": "deferral", "baseline_g": 7.23, "expected_g": 6.49, "at_home_g": 7.82, "realized_g": 7.47,
           "baseline_usd": 0.3648, "expected_usd": 0.3648, "at_home_usd": 0.372, "realized_usd": 0.372}
    path = plot_carbon_cost(tmp_path / "carbon_cost.png", {"rows": [row]})
    assert path.stat().st_size > 0
    assert drawn["at home (realized run time, now)"] == [7.82, 0.372] and drawn["realized"] == [7.47, 0.372]
    assert drawn["baseline (planned, now at home)"] == [7.23, 0.3648]
