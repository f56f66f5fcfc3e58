"""Review 10 #14: `care usage` separates recorded memory from the system allowance, shows exact
first/last sample times, and names the reason a history has no usable rows."""

import json

import pandas as pd

from care_flows.cli import main
from care_flows.orchestration.learned_sizing import SYSTEM_MEMORY_GIB
from care_flows.usage_capture import UsageStore


def _history(store: UsageStore, name: str, start: str, n: int, mem: float = 0.8) -> None:
    times = pd.date_range(start, periods=n, freq="10s", tz="UTC") + pd.Timedelta("0.4s")
    store.append(name, pd.DataFrame({"time": times, "cpu_vcpu": 1.0, "memory_gib": mem, "n_processes": 1}))


def test_usage_shows_recorded_memory_and_system_allowance_apart(tmp_path, capsys):
    store = UsageStore(tmp_path)
    _history(store, "burn", "2026-01-01T04:07:40Z", 13 * 6)  # 13 min of running
    assert main(["usage", "burn", "--usage-dir", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    need = doc["need"]
    assert need["recorded_memory_gib"] == 0.8 and need["system_memory_gib"] == SYSTEM_MEMORY_GIB
    assert need["peak_memory_gib"] == round(0.8 + SYSTEM_MEMORY_GIB, 3)
    assert doc["first"] == "2026-01-01T04:07:40.400000+00:00"  # the first sample, not floored to 04:07:00
    assert doc["last"] == "2026-01-01T04:20:30.400000+00:00"
    assert main(["usage", "burn", "--usage-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"max 0.80 GiB + {SYSTEM_MEMORY_GIB:g} GiB system = 1.30 GiB" in out
    assert "(2026-01-01T04:07:40.400000+00:00 .. 2026-01-01T04:20:30.400000+00:00)" in out


def test_usage_of_a_history_with_epoch_times_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "epoch.csv").write_text("time,cpu_vcpu,memory_gib,n_processes\n1767225600,1.0,0.5,1\n")
    assert main(["usage", "epoch", "--usage-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "no valid rows among 1: times are numbers (epoch?), but the history needs ISO 8601" in err


def test_usage_skips_negative_rows(tmp_path, capsys):
    (tmp_path / "neg.csv").write_text("time,cpu_vcpu,memory_gib,n_processes\n2026-01-01T00:00:00+00:00,-1,0.5,1\n")
    assert main(["usage", "neg", "--usage-dir", str(tmp_path)]) == 2
    assert "no valid rows among 1: each row needs an ISO 8601 time and numbers >= 0" in capsys.readouterr().err


def test_usage_of_a_flow_with_only_durations_recorded_shows_them(tmp_path, capsys):
    """Review 19 #6: size_from_usage off, 3 runs recorded: 'no usage history ... run the @care flow once'."""
    from care_flows.usage_capture import RunRecord

    store = UsageStore(tmp_path)
    for i in range(3):
        store.append_run("timed", RunRecord(f"r{i}", pd.Timestamp("2026-01-01T00:00Z") + pd.Timedelta(hours=i), 600.0 + 60 * i))
    assert main(["usage", "timed", "--usage-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"timed: 0 min of running recorded in {tmp_path}"
    assert out[1].startswith("duration: p90 of the last 3 completed runs: 12m") and "sized below" not in out[1]
    assert out[2].startswith("no usage samples recorded (size_from_usage off, or runs that sampled nothing)")
    assert main(["usage", "timed", "--usage-dir", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["learned_duration_s"] == 720.0 and doc["first"] is None and doc["need"] is None
    assert main(["usage", "never-ran", "--usage-dir", str(tmp_path)]) == 2  # nothing at all: the one-line error stays
    assert capsys.readouterr().err.startswith("error: no usage history named 'never-ran'")


def test_usage_by_the_functions_name_suggests_the_flows_name(tmp_path, capsys):
    """Review 29 L7: `care usage nightly_training` (the Python function) found nothing and said only that."""
    _history(UsageStore(tmp_path), "nightly-training", "2026-01-01T04:00:00Z", 6)
    assert main(["usage", "nightly_training", "--usage-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no usage history named 'nightly_training'" in err and "did you mean 'nightly-training'?" in err
    assert err.count("\n") == 1


def test_usage_and_regions_show_the_cpu_credits_behind_a_burstable_price(tmp_path, capsys):
    """Review 33 #3: `care usage` showed a t3's list price although it was ranked with its credits,
    and the `care regions` table showed 0.0054 USD/h next to 0.0504 USD for one hour."""
    store = UsageStore(tmp_path)
    _history(store, "burn", "2026-01-01T04:00:00Z", 13 * 6)  # 1 vCPU busy for 13 min
    assert main(["usage", "burn", "--usage-dir", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["instance_type"].startswith("t3") and doc["credit_usd_per_hour"] > 0 and 0 < doc["expected_utilisation"] <= 1
    assert main(["usage", "burn", "--usage-dir", str(tmp_path)]) == 0
    assert f"+ {doc['credit_usd_per_hour']:.4f} USD/h of CPU credits at {doc['expected_utilisation']:.0%} CPU" in capsys.readouterr().out
    assert main(["regions", "--regions", "eu-north-1", "--at", "2023-06-01T08:00:00Z", "--duration", "1h",
                 "--vcpu", "0.5", "--memory-gib", "0.3"]) == 0
    # t3.nano: list price + credits for 0.25 busy vCPU (50 % of the 0.5 need) = 12.5 % of its 2 vCPU, baseline 5 %
    assert "0.0054 +0.0075" in capsys.readouterr().out


def test_usage_counts_only_usable_durations_and_says_which_were_skipped(tmp_path, capsys):
    """Review 39b M9 in `care usage`: four corrupted records (1e300 s) printed "4 of 3 completed runs recorded",
    and the skip warning came as a logging line, missing from --json."""
    runs = tmp_path / "hugeruns.runs.jsonl"
    runs.write_text("".join(json.dumps({"run_id": f"r{i}", "finished": f"2026-01-01T0{i}:00:00+00:00", "duration_s": d}) + "\n"
                            for i, d in enumerate([1e300, 1e300, 600.0, 1e300])), encoding="utf-8")
    said = ("warning: CaRE: run history 'hugeruns': skipped 3 of 4 completed runs whose duration is not finite or longer than 366 days "
            "(a corrupted record?); planning does not use them\n")
    assert main(["usage", "hugeruns", "--usage-dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "duration: 1 of 3 completed runs recorded; planning uses the policy's expected_duration" in out and err == said
    assert main(["usage", "hugeruns", "--usage-dir", str(tmp_path), "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["warnings"] == [said.removeprefix("warning: ").strip()] and err == said and doc["runs_recorded"] == 1  # review 39e L1


def test_usage_of_a_service_says_once_that_it_has_no_daily_period(tmp_path, capsys):
    """Review 41c L3: a service's history (one unbroken run) printed the forecaster's raw log line
    three times on stderr, and the JSON's warnings were empty."""
    import numpy as np

    t = pd.date_range("2026-01-01", periods=3 * 8640, freq="10s", tz="UTC")  # three days without a break
    noise = np.random.default_rng(1).random(len(t))
    UsageStore(tmp_path).append("svc", pd.DataFrame({"time": t, "cpu_vcpu": 1.0 + noise, "memory_gib": 2.0, "n_processes": 1}))
    assert main(["usage", "svc", "--usage-dir", str(tmp_path), "--duration", "1h", "--json"]) == 0
    out = capsys.readouterr()
    doc = json.loads(out.out)
    period = [w for w in doc["warnings"] if "no daily/weekly period found" in w]
    assert len(period) == 1 and doc["need"] is not None
    assert out.err.count("no daily/weekly period found") == 1 and out.err.startswith("warning: ")
