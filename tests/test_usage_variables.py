"""Usage histories in Prefect variables (CARE_USAGE_STORE=prefect-variables://...), against a real
Prefect server: round trip in parts under Prefect's 5,000-character limit, rewrites of only the
parts that changed, pruning, run records, errors, and a @care flow recorded and sized from it."""

from __future__ import annotations

import json
import logging
import re
import uuid

import pandas as pd
import pytest
from prefect import get_client

from care_flows.errors import ConfigError, OrchestrationError
from care_flows.usage_capture import RunRecord
from care_flows.usage_variables import MAX_VALUE_CHARS, PrefectVariableUsageStore, history_id, store_prefix
from tests.prefect_queries import variables_named

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _samples(start: str, minutes: int, cpu: float, mem: float = 2.0) -> pd.DataFrame:
    t = pd.date_range(start, periods=minutes * 6, freq="10s", tz="UTC")
    return pd.DataFrame({"time": t, "cpu_vcpu": cpu, "memory_gib": mem, "n_processes": 1})


def _prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"  # the harness's server is shared by the session's tests


def _variables(prefix: str) -> dict[str, object]:
    with get_client(sync_client=True) as client:
        return {v.name: v for v in variables_named(client, prefix + "-")}


class _Recording:
    """A client factory that records the variables written (create or update) and every filter or
    count request with how many variables it returned."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.calls: list[tuple[str, int]] = []

    def __call__(self):
        outer, inner = self, get_client(sync_client=True)

        class Wrapped:
            def __enter__(self):
                self.c = inner.__enter__()
                return self

            def __exit__(self, *exc):
                return inner.__exit__(*exc)

            def create_variable(self, v):
                outer.writes.append(v.name)
                return self.c.create_variable(v)

            def update_variable(self, v):
                outer.writes.append(v.name)
                return self.c.update_variable(v)

            def request(self, method, path, **kw):
                response = self.c.request(method, path, **kw)
                body = response.json()
                outer.calls.append((path, len(body) if isinstance(body, list) else 0))
                return response

            def __getattr__(self, name):
                return getattr(self.c, name)

        return Wrapped()

    def listed(self) -> int:
        return sum(n for path, n in self.calls if path.endswith("/filter"))


def test_a_long_run_is_kept_in_parts_under_the_limit_and_only_changed_parts_are_rewritten() -> None:
    prefix, counting = _prefix(), _Recording()
    store = PrefectVariableUsageStore(f"prefect-variables://{prefix}", client_factory=counting)
    run = _samples("2026-01-01T00:00Z", 150, 1.5)  # 2.5 h of 10-second maxima: 900 rows, three parts
    run["cpu_vcpu"] = [0.1 * (i % 37) for i in range(len(run))]
    store.append("etl/nightly", run.iloc[:800], run_id="run-a")
    assert len(counting.writes) == 3
    counting.writes.clear()
    store.append("etl/nightly", run.iloc[800:], run_id="run-a")  # the next flush: only the last part changed
    assert len(counting.writes) == 1 and counting.writes[0].endswith("-002")
    found = _variables(prefix)
    hid = history_id("etl/nightly")
    assert sorted(found) == [f"{prefix}-{hid}-s-20260101t000000-run-a-{i:03d}" for i in range(3)]
    assert all(len(json.dumps(v.value)) <= MAX_VALUE_CHARS and "care-usage" in v.tags for v in found.values())
    reader = PrefectVariableUsageStore(f"prefect-variables://{prefix}")  # another process, e.g. the controller
    frame = reader.load("etl/nightly")
    assert len(frame) == 900 and frame["time"].is_monotonic_increasing
    assert frame["cpu_vcpu"].to_numpy() == pytest.approx(run["cpu_vcpu"].to_numpy())
    assert frame["time"].tolist() == run["time"].tolist()
    assert reader.load("never-ran").empty and reader.fingerprint("never-ran") is None


def test_histories_whose_names_read_alike_stay_apart_and_a_new_run_changes_the_fingerprint() -> None:
    store = PrefectVariableUsageStore(f"prefect-variables://{_prefix()}")
    store.append("ETL/x", _samples("2026-01-01T00:00Z", 2, 1.0))
    store.append("etl-x", _samples("2026-01-01T00:00Z", 3, 2.0))
    before = store.fingerprint("ETL/x")
    assert len(store.load("ETL/x")) == 12 and len(store.load("etl-x")) == 18
    store.append("ETL/x", _samples("2026-01-02T00:00Z", 1, 1.0))
    assert store.fingerprint("ETL/x") != before and len(store.load("ETL/x")) == 18


def test_the_oldest_parts_and_records_beyond_the_limits_are_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    import care_flows.usage_variables as mod

    monkeypatch.setattr(mod, "MAX_PARTS", 2)
    monkeypatch.setattr(mod, "MAX_RUN_RECORDS", 2)
    prefix = _prefix()
    store = PrefectVariableUsageStore(f"prefect-variables://{prefix}")
    for day, cpu in ((1, 1.0), (2, 2.0), (3, 3.0)):
        store.append("etl", _samples(f"2026-01-0{day}T00:00Z", 1, cpu))
        store.append_run("etl", RunRecord(run_id=f"run-{day}", finished=pd.Timestamp(f"2026-01-0{day}T01:00Z"), duration_s=60.0 * day))
    assert sorted(store.load("etl")["cpu_vcpu"].unique()) == [2.0, 3.0]  # the first day's run is gone
    assert [r.duration_s for r in store.load_runs("etl")] == [120.0, 180.0]
    assert len(_variables(prefix)) == 4


def test_a_malformed_part_is_skipped_with_a_warning_naming_it(caplog: pytest.LogCaptureFixture) -> None:
    from prefect.client.schemas.actions import VariableCreate

    prefix = _prefix()
    store = PrefectVariableUsageStore(f"prefect-variables://{prefix}")
    store.append("etl", _samples("2026-01-01T00:00Z", 1, 1.0))
    bad = f"{prefix}-{history_id('etl')}-s-20260102t000000-hand-000"
    with get_client(sync_client=True) as client:
        client.create_variable(VariableCreate(name=bad, value={"data": "not base64 zlib"}, tags=[f"{prefix}-{history_id('etl')}-s"]))
    with caplog.at_level(logging.WARNING, logger="care_flows.usage"):
        assert len(store.load("etl")) == 6
    assert any(bad in r.getMessage() and "delete it" in r.getMessage() for r in caplog.records)


def test_an_unreachable_api_is_one_line_naming_the_store() -> None:
    from prefect.client.orchestration import SyncPrefectClient

    def dead():
        return SyncPrefectClient("http://127.0.0.1:9/api")  # nothing listens on the discard port

    store = PrefectVariableUsageStore("prefect-variables://care-usage", client_factory=dead)
    with pytest.raises(OrchestrationError) as err:
        store.load("etl")
    msg = str(err.value)
    assert "\n" not in msg and "prefect-variables://care-usage" in msg and "PREFECT_API_URL" in msg


@pytest.mark.parametrize("url", ["prefect-variables://Team A", "prefect-variables://" + "x" * 41])
def test_a_prefix_prefect_would_refuse_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="lower-case"):
        store_prefix(url)


def test_a_care_flow_records_to_prefect_variables_and_is_sized_from_it(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from prefect import flow

    from care_flows.cli import main
    from care_flows.orchestration import care
    from care_flows.pricing import EmbeddedPrices
    from care_flows.usage_capture import default_usage_store

    prefix = _prefix()
    monkeypatch.setenv("CARE_USAGE_STORE", f"prefect-variables://{prefix}")
    t0 = pd.Timestamp.now(tz="UTC").floor("h")  # the real clock: only its runs record a duration
    fc = {"eu-north-1": pd.Series([20.0] * 12, index=pd.date_range(t0, periods=12, freq="1h"), name="g_per_kwh")}
    pol = dict(home_region="eu-north-1", regions=["eu-north-1"], expected_duration="1h", deadline_within="8h", vcpu=2, memory_gib=4)

    @care(policy=pol, signal=fc)
    @flow(name="variables-sized")
    def variables_sized() -> int:
        import time

        time.sleep(1.0)
        return 1

    first = variables_sized(return_state=True)
    assert first.result() == 1
    names = sorted(_variables(prefix))
    hid = history_id("variables-sized")
    run_id = first.state_details.flow_run_id  # named after the flow run, so an operator can map a variable to its run
    assert any(re.fullmatch(rf"{prefix}-{hid}-s-\d{{8}}t\d{{6}}-{run_id}-[0-9a-f]{{12}}-000", n) for n in names), names
    assert any(re.fullmatch(rf"{prefix}-{hid}-r-\d{{8}}t\d{{6}}-{run_id}", n) for n in names), names
    PrefectVariableUsageStore(f"prefect-variables://{prefix}").append("variables-sized", _samples("2026-01-01T00:00Z", 15, 6.0, 20.0))

    state = variables_sized(return_state=True)
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        [art] = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
                                                                    key=ArtifactFilterKey(any_=["care-decision-variables-sized"])))
    md = str(art.data)
    assert "Sized from**: usage history 'variables-sized'" in md
    itype = re.search(r"instance type: `([^`]+)`", md).group(1)  # type: ignore[union-attr]
    row = EmbeddedPrices().catalog("eu-north-1").set_index("instance_type").loc[itype]
    assert row["vcpu"] >= 6.0 * 1.2 and row["memory_gib"] >= 20.5 * 1.2
    assert isinstance(default_usage_store(), PrefectVariableUsageStore)

    capsys.readouterr()
    assert main(["usage", "variables-sized", "--usage-dir", f"prefect-variables://{prefix}", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["directory"] == f"prefect-variables://{prefix}" and doc["runs_recorded"] == 2 and doc["minutes_of_running"] >= 15


def test_planning_again_on_an_unchanged_history_downloads_no_variable_values() -> None:
    """Review 26 M1: every fingerprint, load and load_runs listed (and downloaded) the whole history:
    5 MB per plan at 100 runs, for every run a controller pass planned."""
    prefix, requests = _prefix(), _Recording()
    writer = PrefectVariableUsageStore(f"prefect-variables://{prefix}")
    for day in range(1, 7):
        writer.append("etl", _samples(f"2026-01-0{day}T00:00Z", 2, float(day)))
        writer.append_run("etl", RunRecord(run_id=f"run-{day}", finished=pd.Timestamp(f"2026-01-0{day}T01:00Z"), duration_s=60.0))
    planner = PrefectVariableUsageStore(f"prefect-variables://{prefix}", client_factory=requests)
    first = (planner.fingerprint("etl"), len(planner.load("etl")), len(planner.load_runs("etl")))
    assert first[1:] == (72, 6) and requests.listed() <= 6 + 6 + 3, requests.calls  # each kind listed once (+ the newest-update probes)
    requests.calls.clear()
    again = (planner.fingerprint("etl"), len(planner.load("etl")), len(planner.load_runs("etl")))
    assert again == first
    assert requests.listed() <= 3  # only the snapshots' newest variable of each kind: no history downloaded again
    requests.calls.clear()
    writer.append("etl", _samples("2026-01-08T00:00Z", 1, 9.0))  # a new run: the fingerprint changes, the samples are read again
    assert planner.fingerprint("etl") != first[0] and len(planner.load("etl")) == 78


def test_a_write_that_fails_part_way_is_stored_once_when_the_batch_is_handed_over_again() -> None:
    """Review 44e H1: the store kept a batch before writing it and the @care sampler hands a refused batch
    over again, so one failed write stored its rows twice (24 rows for 18 times) and a store refusing every
    write grew quadratically. Only what was written is kept; the parts written before the failure stay known."""
    prefix, counting = _prefix(), _Recording()
    fail_at = [2]  # the second variable written fails: a write that stops part way

    def flaky():
        wrapped = counting()
        real_create, real_update = wrapped.create_variable, wrapped.update_variable

        def check(real):
            def put(v):
                fail_at[0] -= 1
                if fail_at[0] == 0:
                    raise ConnectionError("connection reset by peer")
                return real(v)
            return put

        wrapped.create_variable, wrapped.update_variable = check(real_create), check(real_update)
        return wrapped

    store = PrefectVariableUsageStore(f"prefect-variables://{prefix}", client_factory=flaky)
    run = _samples("2026-01-01T00:00Z", 150, 1.5)
    run["cpu_vcpu"] = [0.1 * (i % 37) for i in range(len(run))]
    with pytest.raises(OrchestrationError, match="connection reset by peer"):
        store.append("etl/nightly", run.iloc[:800], run_id="run-a")  # part 000 written, then the write fails
    assert store._runs[next(iter(store._runs))][1] is None  # no samples kept that were not all written
    store.append("etl/nightly", run, run_id="run-a")  # the refused 800 rows again, with the next 100
    frame = PrefectVariableUsageStore(f"prefect-variables://{prefix}").load("etl/nightly")
    assert frame["time"].tolist() == run["time"].tolist()  # every time once
    assert frame["cpu_vcpu"].to_numpy() == pytest.approx(run["cpu_vcpu"].to_numpy())
