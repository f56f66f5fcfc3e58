"""Review 33 #2: the learned mean vCPU (expected utilisation, CPU credits, energy) was the mean of
the stored 10-second maxima, ~2.3x the true mean for a flow that bursts for under 10 s at a time.

Every store now keeps the 10-second mean CPU (``cpu_vcpu_mean``) beside the maxima; rows written
before it existed are read with it empty, fall back to their maximum, and the learned need says
its mean is an upper bound."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from care_flows.orchestration.learned_sizing import MAX_RUNS, LearnedNeed, learned_need, need_from_samples, record_usage
from care_flows.policy import CarePolicy
from care_flows.usage_capture import CAPACITY_COLUMN, COLUMNS, UsageSampler, UsageStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "aws"))  # the moto server helpers of the S3 store's tests
from test_aws_support import aws, moto_url  # noqa: E402,F401

CPU_MEAN_COLUMN = "cpu_vcpu_mean"  # the stored column's name (usage_capture.CPU_MEAN_COLUMN): a format, spelled out
BURST_VCPU, IDLE_VCPU = 1.45, 0.1
PATTERN = [BURST_VCPU] * 2 + [IDLE_VCPU] * 3  # 2 s busy, 3 s waiting on I/O: every burst is shorter than 10 s
TRUE_MEAN = float(np.mean(PATTERN))  # 0.64
POLICY = CarePolicy(home_region="eu-north-1")


def _run_samples(start: str, seconds: int) -> pd.DataFrame:
    """1-second samples of a bursty run, off the 10-s grid (samples are not taken on whole seconds)."""
    t = pd.date_range(start, periods=seconds, freq="1s") + pd.Timedelta("0.37s")
    cpu = np.resize(PATTERN, seconds)
    return pd.DataFrame({"time": t, "cpu_vcpu": cpu, "memory_gib": 1.0, "n_processes": 1})


def _record_like_a_run(store, key: str, samples: pd.DataFrame, run_id: str) -> None:
    """What @care does: the sampler hands over its new samples every 60 s, each batch recorded with the run's id."""
    for start in range(0, len(samples), 60):
        record_usage(POLICY, key, samples.iloc[start:start + 60], store=store, run_id=run_id)


def _old_rows(start: str, seconds: int) -> pd.DataFrame:
    """Rows as stored before review 33: 10-s maxima, no mean column."""
    samples = _run_samples(start, seconds).set_index("time")
    return samples.resample("10s").max().rename_axis("time").reset_index()[COLUMNS]


# -- (a) the learned mean is the true mean, the peak stays the burst ----------------------------------------------


def test_bursts_shorter_than_10s_give_the_true_mean_and_keep_the_burst_peak(tmp_path: Path) -> None:
    store = UsageStore(tmp_path)
    runs = [_run_samples(f"2026-01-0{day + 1}T02:00:00Z", 1800) for day in range(5)]  # five daily 30-min runs
    for day, run in enumerate(runs):
        _record_like_a_run(store, "etl", run, run_id=f"run-{day}")
    stored = store.load("etl")
    assert CPU_MEAN_COLUMN in stored.columns and stored[CPU_MEAN_COLUMN].notna().all()
    assert (stored["cpu_vcpu"] == BURST_VCPU).all()  # every 10-s bucket holds a burst: its maximum is the burst
    learned = learned_need(store, "etl", duration_s=1800)
    assert learned is not None and not learned.mean_from_maxima
    assert learned.need.mean_vcpu == pytest.approx(TRUE_MEAN, rel=0.03)  # was 1.45 (x2.3)
    assert learned.need.peak_vcpu == BURST_VCPU
    assert f"mean {TRUE_MEAN:.2f} vCPU" in learned.describe() and "upper bound" not in learned.describe()


def test_the_learned_mean_sets_the_priced_utilisation(tmp_path: Path) -> None:
    """What the fix is for: the expected utilisation (and CPU credits) of the chosen type follow the true mean."""
    from care_flows.planning.sizing import right_size

    store = UsageStore(tmp_path)
    for day in range(3):
        _record_like_a_run(store, "etl", _run_samples(f"2026-01-0{day + 1}T02:00:00Z", 1200), run_id=f"r{day}")
    need = learned_need(store, "etl", duration_s=1200).need
    choice = right_size("eu-north-1", usage=need, headroom_pct=20)
    assert choice.expected_utilisation == pytest.approx(TRUE_MEAN / choice.vcpu, rel=0.03)  # was 1.45 / vcpu


def test_a_flow_that_never_stops_forecasts_its_mean_from_the_stored_means(tmp_path: Path) -> None:
    store = UsageStore(tmp_path)
    record_usage(POLICY, "service", _run_samples("2026-01-01T00:00:00Z", 2 * 86_400 + 600), store=store)  # two days, unbroken
    learned = learned_need(store, "service", duration_s=1800)
    assert learned is not None and learned.runs is None  # the forecast branch
    assert learned.need.mean_vcpu == pytest.approx(TRUE_MEAN, rel=0.03)
    assert learned.need.peak_vcpu == BURST_VCPU and not learned.mean_from_maxima


def test_the_real_sampler_records_a_mean_no_larger_than_the_maximum(tmp_path: Path) -> None:
    store = UsageStore(tmp_path)
    with UsageSampler(interval_s=0.05, on_flush=lambda f: record_usage(POLICY, "live", f, store=store, run_id="live"), flush_every_s=0.2) as s:
        _ = sum(i * i for i in range(300_000))
    s.flush()
    rows = store.load("live")
    assert len(rows) >= 1 and rows[CPU_MEAN_COLUMN].notna().all()
    assert (rows[CPU_MEAN_COLUMN] <= rows["cpu_vcpu"] + 1e-12).all()


def test_stored_rows_give_publish_realized_their_mean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import prefect.artifacts

    from care_flows.orchestration import artifacts

    monkeypatch.setattr(prefect.artifacts, "create_markdown_artifact", lambda markdown, **kw: None)
    store = UsageStore(tmp_path)
    record_usage(POLICY, "etl", _run_samples("2026-01-01T02:00:00Z", 600), store=store)
    t0 = pd.Timestamp("2026-01-01T02:00:00Z")
    common = dict(started=t0, finished=t0 + pd.Timedelta(minutes=10), region="eu-north-1")
    stored = artifacts.publish_realized(None, usage=store.load("etl"), **common)
    assert stored["cpu_vcpu_mean"] == pytest.approx(TRUE_MEAN, rel=0.03) and stored["cpu_vcpu_peak"] == BURST_VCPU
    raw = artifacts.publish_realized(None, usage=_run_samples("2026-01-01T02:00:00Z", 600), **common)  # the in-run 1-s frame
    # interval-weighted (review 34a #3): the first sample counts as the sampler's baseline, one of 600
    assert raw["cpu_vcpu_mean"] == pytest.approx(TRUE_MEAN, abs=2e-3)


# -- (b) rows stored before the column existed ---------------------------------------------------------------------


def _write_old_csv(store: UsageStore, key: str, rows: pd.DataFrame) -> None:
    """A history file exactly as the old UsageStore.append wrote it (four columns)."""
    out = rows.copy()
    out["time"] = out["time"].map(lambda t: t.isoformat())
    store.path(key).parent.mkdir(parents=True, exist_ok=True)
    store.path(key).write_text(out.to_csv(index=False))


def test_an_old_history_is_read_and_its_mean_is_flagged_as_an_upper_bound(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from care_flows.cli import main

    store = UsageStore(tmp_path)
    _write_old_csv(store, "etl", pd.concat([_old_rows(f"2026-01-0{d}T02:00:00Z", 900) for d in (1, 2)]))
    assert store.path("etl").read_text().splitlines()[0] == ",".join(COLUMNS)
    learned = learned_need(store, "etl", duration_s=900)
    assert learned.mean_from_maxima and learned.need.mean_vcpu == BURST_VCPU  # what it was: the maxima's mean
    assert "mean <= 1.45 vCPU" in learned.describe() and "upper bound" in learned.describe()

    # a new run appends to the old file (its four-column header stays): both read back, the flag stays
    _record_like_a_run(store, "etl", _run_samples("2026-01-03T02:00:00Z", 900), run_id="new")
    rows = store.load("etl")
    assert len(rows) == 3 * 90 and rows[CPU_MEAN_COLUMN].isna().sum() == 2 * 90
    learned = learned_need(store, "etl", duration_s=900)
    assert learned.mean_from_maxima
    assert TRUE_MEAN < learned.need.mean_vcpu < BURST_VCPU
    assert learned.need.mean_vcpu == pytest.approx((2 * BURST_VCPU + TRUE_MEAN) / 3, rel=0.03)

    assert main(["usage", "etl", "--usage-dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["need"]["mean_vcpu_from_maxima"] is True
    assert main(["usage", "etl", "--usage-dir", str(tmp_path)]) == 0
    assert "is an upper bound: older rows stored 10-s maxima only" in capsys.readouterr().out


def test_old_rows_beyond_the_newest_runs_no_longer_flag_the_mean(tmp_path: Path) -> None:
    store = UsageStore(tmp_path)
    _write_old_csv(store, "etl", _old_rows("2025-12-01T02:00:00Z", 600))
    for i in range(MAX_RUNS):  # the newest MAX_RUNS runs all stored their means
        _record_like_a_run(store, "etl", _run_samples(f"2026-01-01T{i:02d}:00:00Z", 120), run_id=f"r{i}")
    learned = learned_need(store, "etl", duration_s=120)
    assert learned.runs == MAX_RUNS and not learned.mean_from_maxima
    assert learned.need.mean_vcpu == pytest.approx(TRUE_MEAN, rel=0.03)


def test_frames_without_the_column_fall_back_to_the_maximum() -> None:
    rows = _old_rows("2026-01-01T02:00:00Z", 900)
    learned = need_from_samples(rows, "etl", duration_s=900)
    assert learned.mean_from_maxima and learned.need.mean_vcpu == BURST_VCPU
    mixed = rows.assign(**{CPU_MEAN_COLUMN: [TRUE_MEAN] * (len(rows) - 1) + [None]})  # one row without its mean
    assert need_from_samples(mixed, "etl", duration_s=900).mean_from_maxima
    assert isinstance(learned, LearnedNeed)


# -- (c) every store round-trips the column ------------------------------------------------------------------------


def _with_means(start: str, minutes: int) -> pd.DataFrame:
    t = pd.date_range(start, periods=minutes * 6, freq="10s", tz="UTC")
    mean = np.resize([0.25, 0.5, 0.125], len(t))
    return pd.DataFrame({"time": t, "cpu_vcpu": 1.5, "memory_gib": 2.0, "n_processes": 2, CPU_MEAN_COLUMN: mean, CAPACITY_COLUMN: 4.0})


def _check_round_trip(store, key: str) -> None:
    """New rows keep their means (and the vCPU they could use); rows without the columns (an old writer) come back with NaN there."""
    new = _with_means("2026-01-02T00:00Z", 3)
    store.append(key, _old_rows("2026-01-01T00:00:00Z", 60), run_id="old")
    store.append(key, new, run_id="new")
    rows = store.load(key)
    assert list(rows.columns) == COLUMNS + [CPU_MEAN_COLUMN, CAPACITY_COLUMN]
    assert rows[CPU_MEAN_COLUMN].iloc[:6].isna().all()
    assert rows[CPU_MEAN_COLUMN].iloc[6:].tolist() == new[CPU_MEAN_COLUMN].tolist()
    assert rows["cpu_vcpu"].iloc[6:].tolist() == [1.5] * len(new)
    assert rows[CAPACITY_COLUMN].iloc[:6].isna().all() and rows[CAPACITY_COLUMN].iloc[6:].tolist() == [4.0] * len(new)


def test_the_local_store_round_trips_the_mean(tmp_path: Path) -> None:
    store = UsageStore(tmp_path)
    _check_round_trip(store, "etl/nightly")
    header = store.path("etl/nightly").read_text().splitlines()[0]
    assert header == ",".join(COLUMNS + [CPU_MEAN_COLUMN, CAPACITY_COLUMN])
    assert UsageStore(tmp_path).load("etl/nightly")[CPU_MEAN_COLUMN].notna().sum() == 18


def test_the_s3_store_round_trips_the_mean(aws) -> None:  # noqa: F811 - the moto fixture
    from care_flows.aws.usage_store import S3UsageStore

    aws.client("s3", "eu-north-1").create_bucket(Bucket="care-mean-test", CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    store = S3UsageStore("s3://care-mean-test/h", clients=aws, region="eu-north-1")
    _check_round_trip(store, "etl")
    # an object written by the old store (four columns), read by a fresh process with the new ones
    aws.client("s3", "eu-north-1").put_object(Bucket="care-mean-test", Key="h/etl/20251231T000000-old.csv",
                                              Body=b"time,cpu_vcpu,memory_gib,n_processes\n2025-12-31T00:00:00+00:00,1.0,1.0,1\n")
    rows = S3UsageStore("s3://care-mean-test/h", clients=aws, region="eu-north-1").load("etl")
    assert len(rows) == 25 and rows[CPU_MEAN_COLUMN].isna().sum() == 7


@pytest.mark.usefixtures("prefect_harness")
def test_the_prefect_variables_store_round_trips_the_mean() -> None:
    from care_flows.usage_variables import PrefectVariableUsageStore

    store = PrefectVariableUsageStore(f"prefect-variables://t{uuid.uuid4().hex[:10]}")
    _check_round_trip(store, "etl")
    fresh = PrefectVariableUsageStore(store.url).load("etl")  # another process: read from the server
    assert fresh[CPU_MEAN_COLUMN].notna().sum() == 18
