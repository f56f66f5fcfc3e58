"""`care report`: per-flow sums of the care-realized artifacts of real @care runs (Prefect test server)."""

from __future__ import annotations

import json
import socket

import pandas as pd
import pytest
from prefect import flow
from prefect.states import Scheduled

from care_flows.cli import main
from care_flows.cli.report import build_report, parse_realized
from care_flows.orchestration import care
from care_flows.orchestration.artifacts import artifact_key
from tests.prefect_queries import runs_of

H = pd.Timedelta(hours=1)
LOCAL, SPLIT, LEGACY = "report-local-etl", "report-split-etl", "report-legacy-etl"
MINE = [LOCAL, SPLIT, LEGACY]

# two artifacts written before the root was recorded (one job each), and one that is not realized figures
LEGACY_A = ("# CaRE realized figures (completed)\n\n- **region**: eu-south-2\n- **started**: 2026-03-01T00:00:00+00:00\n"
            "- **finished**: 2026-03-01T01:00:00+00:00\n- **duration_s**: 3600.0\n- **outcome**: completed\n"
            "- **realized_g_per_kwh**: 100.0\n- **realized_from**: synthetic history\n- **realized_kwh**: 0.1\n"
            "- **realized_g**: 10.0\n- **realized_usd**: n/a\n- **expected_g_per_kwh**: 200.0\n- **expected_g**: 20.0\n"
            "- **expected_usd**: n/a\n- **baseline_g**: 50.0\n- **baseline_g_per_kwh**: 500.0\n- **baseline_realized_g_per_kwh**: 500.0\n")
LEGACY_B = LEGACY_A.replace("- **realized_g**: 10.0", "- **realized_g**: n/a").replace("**baseline_realized_g_per_kwh**: 500.0", "**baseline_realized_g_per_kwh**: 400.0")
GARBAGE = "# CaRE realized figures (completed)\n\n- **region**: eu-south-2\n- **started**: yesterday-ish\n- **finished**: n/a\n"


def _series(start: pd.Timestamp, values: list[float]) -> pd.Series:
    s = pd.Series(values, index=pd.date_range(start, periods=len(values), freq="1h"), dtype=float)
    s.attrs["source"] = "synthetic"
    return s


def _policy(**kw):
    return dict(home_region="eu-south-2", regions=["eu-south-2"], deadline_within="8h", **kw)


def _run_existing(flow_obj, flow_run_id):
    """Run an existing flow run in this process (what a worker does), from now."""
    from prefect import get_client
    from prefect.flow_engine import run_flow_sync

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Scheduled(scheduled_time=pd.Timestamp.now(tz="UTC").to_pydatetime()), force=True)
        fr = client.read_flow_run(flow_run_id)
    return run_flow_sync(flow_obj, flow_run=fr, parameters=fr.parameters, return_type="state")


def _realized(client, flow_name: str) -> list[dict]:
    """The parsed care-realized figures of every run of ``flow_name`` (to check the sums against)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey, FlowFilter, FlowFilterName

    runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
    arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact_key("care-realized", flow_name)]),
                                                                flow_run_id=ArtifactFilterFlowRunId(any_=[r.id for r in runs])))
    return [parse_realized(a.data) for a in arts]


@pytest.fixture(scope="module")
def period(prefect_harness) -> dict:
    """Runs the flows once: two local one-segment jobs, one job in two segments (checkpoint ->
    continuation run), and a plain flow writing two root-less artifacts and one malformed one."""
    from prefect import get_client
    from prefect.artifacts import create_markdown_artifact

    start = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=1)
    t0 = pd.Timestamp("2026-03-02T00:00:00Z")
    clock = [t0]

    def body(n: int = 1) -> int:
        clock[0] = clock[0] + H  # the body "takes" an hour on the injected clock
        return n

    # the same flow planned twice: "decide" sizes and prices an instance, "window" does not (no price:
    # the realized kWh, gCO2eq and USD are unknown, and the report must not count them as 0)
    for planner in ("decide", "window"):
        local_etl = care(policy=_policy(expected_duration="1h"), signal={"eu-south-2": _series(t0, [200.0] * 10)},
                         clock=lambda: clock[0], planner=planner)(flow(body, name=LOCAL))
        clock[0] = t0
        assert local_etl(return_state=True).is_completed()

    base = pd.Timestamp.now(tz="UTC").floor("h")
    split_clock = [base]

    @care(policy=_policy(expected_duration="2h", interruptible=True), signal={"eu-south-2": _series(base, [20, 400, 400, 30, 400, 400, 400, 400, 400, 400])},
          clock=lambda: split_clock[0], planner="decide")
    @flow(name=SPLIT)
    def split_etl(x: int = 1) -> int:
        if split_clock[0] < base + H:
            split_clock[0] = base + 70 * pd.Timedelta(minutes=1)  # the first green slot is over: continue at the next
        care.checkpoint()
        split_clock[0] = split_clock[0] + 30 * pd.Timedelta(minutes=1)
        return x

    dep_id = split_etl.to_deployment(name="report-harness").apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, parameters={"x": 2})
    assert _run_existing(split_etl, trigger.id).is_completed()
    with get_client(sync_client=True) as client:
        [continuation] = [r for r in runs_of(client, dep_id) if r.deployment_id == dep_id and r.id != trigger.id]
    split_clock[0] = base + 3 * H
    assert _run_existing(split_etl, continuation.id).is_completed()

    @flow(name=LEGACY)
    def legacy() -> None:  # as an older CaRE wrote them: under the key every flow shared
        for text in (LEGACY_A, LEGACY_B, GARBAGE):
            create_markdown_artifact(markdown=text, key="care-realized")

    legacy()
    with get_client(sync_client=True) as client:
        figures = {name: _realized(client, name) for name in (LOCAL, SPLIT)}
    return {"start": start.isoformat(), "end": (pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=1)).isoformat(), "figures": figures,
            "root": str(trigger.id)}


def _json(capsys, *args: str) -> dict:
    assert main(["report", *args, "--json"]) == 0
    out = capsys.readouterr().out
    return json.loads(out)  # stdout holds only the document


def _rows(doc: dict) -> dict[str, dict]:
    return {row["flow"]: row for row in doc["flows"]}


def test_sums_per_flow_count_a_jobs_plan_once_however_many_segments(period, capsys):
    doc = _json(capsys, "--start", period["start"], "--end", period["end"], "--flow", LOCAL, "--flow", SPLIT, "--flow", LEGACY)
    rows = _rows(doc)
    assert set(rows) == set(MINE) and doc["skipped"] == 1
    assert doc["start"].endswith("+00:00") and doc["end"].endswith("+00:00")

    local, split = period["figures"][LOCAL], period["figures"][SPLIT]
    assert len(local) == 2 and len(split) == 2
    row = rows[LOCAL]
    assert (row["jobs"], row["segments"], row["segments_completed"], row["segments_failed"]) == (2, 2, 2, 0)
    [priced] = [f for f in local if f["realized_usd"] is not None]  # the "window" run has no price: its USD is n/a
    assert all(f["realized_g"] > 0 and f["realized_kwh"] > 0 for f in local)  # its power is known (review 21 #2)
    assert row["realized_g"] == {"value": pytest.approx(sum(f["realized_g"] for f in local)), "jobs": 2}
    assert row["realized_usd"] == {"value": pytest.approx(priced["realized_usd"]), "jobs": 1}  # over 1 of 2 jobs, not + 0
    assert row["expected_usd"] == {"value": pytest.approx(priced["expected_usd"]), "jobs": 1}
    # the baseline is the energy really used at the intensity running now at home met (not the
    # plan's figure for a planned hour); these runs ran now, at home, so they saved nothing
    # (review 17 #2: not a forecast's error either)
    at_home = sum(f["realized_kwh"] * f["baseline_realized_g_per_kwh"] for f in local)
    assert row["baseline_g"] == {"value": pytest.approx(at_home), "jobs": 2}
    assert row["saved_g"] == {"value": pytest.approx(0.0, abs=1e-6), "jobs": 2}
    assert row["first_started"] == "2026-03-02T00:00:00+00:00" and row["last_finished"] == "2026-03-02T01:00:00+00:00"

    # one job in two segments (continued, then completed), tied by the trigger run's id
    row = rows[SPLIT]
    assert {f["root"] for f in split} == {period["root"]} and sorted(f["outcome"] for f in split) == ["completed", "continued"]
    assert (row["jobs"], row["segments"], row["segments_completed"], row["segments_continued"]) == (1, 2, 1, 1)
    assert row["realized_g"]["value"] == pytest.approx(sum(f["realized_g"] for f in split))
    # the report rounds sums to 6 decimals: a ~0.024 kWh sum is exact to 1e-6 absolute, not relative
    assert row["realized_kwh"]["value"] == pytest.approx(sum(f["realized_kwh"] for f in split), abs=1e-6)
    assert row["expected_g"] == {"value": pytest.approx(split[0]["expected_g"]), "jobs": 1}  # the plan's, once: not x2
    at_home = sum(f["realized_kwh"] * f["baseline_realized_g_per_kwh"] for f in split)
    assert row["baseline_g"] == {"value": pytest.approx(at_home), "jobs": 1}
    saved = at_home - sum(f["realized_g"] for f in split)
    assert saved > 0 and row["saved_g"]["value"] == pytest.approx(saved)
    assert row["saved_pct"]["value"] == pytest.approx(100 * saved / at_home)

    # root-less artifacts are one job each; unknown figures are left out of the sums and counted
    row = rows[LEGACY]
    assert (row["jobs"], row["segments"]) == (2, 2)
    assert row["realized_g"] == {"value": 10.0, "jobs": 1} and row["realized_usd"] == {"value": None, "jobs": 0}
    assert row["baseline_g"] == {"value": 90.0, "jobs": 2}
    assert row["saved_g"] == {"value": 40.0, "jobs": 1} and row["saved_pct"] == {"value": 80.0, "jobs": 1}

    total = doc["total"]
    assert (total["jobs"], total["segments"]) == (5, 6)
    assert total["realized_g"]["jobs"] == 4 and total["realized_g"]["value"] == pytest.approx(sum(rows[f]["realized_g"]["value"] for f in MINE))
    assert total["baseline_g"]["value"] == pytest.approx(sum(rows[f]["baseline_g"]["value"] for f in MINE))


def test_the_shared_key_of_older_cares_and_the_per_flow_key_are_both_counted_and_no_other_kind(prefect_harness, capsys):
    """Review L2: every flow's artifacts shared one key per kind in the Prefect UI; the keys now name
    the flow (care-realized-<flow>), and the report still counts what older versions wrote under
    the shared care-realized key. The flow is its run's, not the key's; Prefect's like_ key filter
    matches a substring, so no other key that contains care-realized is counted."""
    from prefect import get_client
    from prefect.artifacts import create_markdown_artifact
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    mixed = "report-mixed-keys"
    start = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=1)

    @flow(name=mixed)
    def older() -> None:  # a run of an older CaRE: its figures under the shared key
        create_markdown_artifact(markdown=LEGACY_A, key="care-realized")
        # realized figures under other keys with care-realized inside: another kind of a flow named so, and a user's own
        create_markdown_artifact(markdown=LEGACY_A, key=artifact_key("care-decision", "care-realized-etl"))
        create_markdown_artifact(markdown=LEGACY_A, key="my-care-realized")

    older()
    t0 = pd.Timestamp("2026-03-02T00:00:00Z")
    clock = [t0]

    def body() -> int:
        clock[0] = clock[0] + H
        return 1

    newer = care(policy=_policy(expected_duration="1h"), signal={"eu-south-2": _series(t0, [200.0] * 10)},
                 clock=lambda: clock[0], planner="decide")(flow(body, name=mixed))
    state = newer(return_state=True)
    assert state.is_completed()
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    keys = {a.key for a in arts}
    assert {"care-realized-report-mixed-keys", "care-decision-report-mixed-keys", "care-options-report-mixed-keys"} <= keys, keys
    [new] = [parse_realized(a.data) for a in arts if a.key == "care-realized-report-mixed-keys"]

    end = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=1)).isoformat()
    doc = _json(capsys, "--start", start.isoformat(), "--end", end, "--flow", mixed)
    [row] = doc["flows"]  # the decoys (valid figures, in the older run) would be 2 more segments
    assert (row["flow"], row["jobs"], row["segments"], doc["skipped"]) == (mixed, 2, 2, 0), (row, doc["skipped"])
    assert row["realized_g"] == {"value": pytest.approx(10.0 + new["realized_g"]), "jobs": 2}


def test_flow_filter_and_reading_every_page(period, capsys):
    doc = _json(capsys, "--start", period["start"], "--end", period["end"], "--flow", SPLIT)
    assert [row["flow"] for row in doc["flows"]] == [SPLIT] and doc["total"]["jobs"] == 1 and doc["flows_requested"] == [SPLIT]
    # the malformed artifact is the legacy flow's, not this one's; artifacts_read counts every flow's in the
    # period (>=: a run another test left behind, e.g. a killed flow's process, may publish in it too)
    assert doc["skipped"] == 0 and doc["artifacts_read"] >= 7
    # pages of 2 artifacts give the same report as the server's default page
    from prefect import get_client

    start, end = pd.Timestamp(period["start"]), pd.Timestamp(period["end"])
    with get_client(sync_client=True) as client:
        paged = build_report(start, end, flows=MINE, client=client, page_size=2)
    whole = build_report(start, end, flows=MINE)
    assert paged["total"] == whole["total"] and paged["total"]["segments"] == 6 and paged["skipped"] == 1
    # without --flow every flow in the period is reported (other tests' flows too)
    everything = _json(capsys, "--start", period["start"], "--end", period["end"])
    assert set(MINE) <= set(_rows(everything))


def test_human_output_is_a_table_and_a_total_line(period, capsys):
    assert main(["report", "--start", period["start"], "--end", period["end"], "--flow", SPLIT, "--flow", LEGACY]) == 0
    out = capsys.readouterr().out
    assert "CaRE report" in out and SPLIT in out and LEGACY in out and LOCAL not in out, out
    assert "10.0 [1/2]" in out, out  # the legacy flow's realized gCO2eq covers one of its two jobs
    total = next(line for line in out.splitlines() if line.startswith("total: "))
    assert "3 jobs, 4 segments (3 completed, 1 continued, 0 failed)" in total and "[2/3]" in total and "over 2 of 3 jobs" not in total  # review 40a L8: the table's mark, not a phrase per figure
    assert "skipped 1 artifact that could not be read" in out


def test_an_empty_period_says_so_and_exits_0(period, capsys):
    assert main(["report", "--since", "1h", "--flow", "no-such-flow"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no care-realized artifacts of flow no-such-flow created between ") and out.count("\n") == 1
    assert main(["report", "--since", "1h", "--flow", "no-such-flow", "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["flows"] == [] and doc["total"]["jobs"] == 0
    # review 38c L6: with --json the note is a warning: line and in the JSON's warnings, as in every other command
    (warning,) = doc["warnings"]
    assert warning.startswith("no care-realized artifacts of flow no-such-flow") and err.splitlines() == [f"warning: {warning}"]


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "soon"], "--since 'soon' is not a duration"),
    (["--start", "2026-03-02"], "--start 2026-03-02 has no UTC offset"),
    (["--since", "2d", "--start", "2026-03-02T00:00:00Z"], "give --since (2d) or --start"),
    (["--start", "2026-03-02T00:00:00Z", "--end", "2026-03-01T00:00:00Z"], "at or after it ends"),
])
def test_a_bad_period_is_a_one_line_error(args, message, capsys):
    assert main(["report", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_publish_puts_the_report_in_the_prefect_ui_as_a_versioned_artifact(period, capsys):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    assert main(["report", "--start", period["start"], "--end", period["end"], "--publish", "--json"]) == 0
    out = capsys.readouterr()
    doc = json.loads(out.out)  # stdout still holds only the document; the flow run's log lines go to stderr
    assert f"published as the care-report artifact ({doc['published_artifact_id']})" in out.err
    empty = ["--start", "2020-01-01T00:00:00Z", "--end", "2020-01-02T00:00:00Z"]
    assert main(["report", *empty, "--publish"]) == 0  # an empty period is published too
    out = capsys.readouterr()
    assert out.out.startswith("no care-realized artifacts") and "published as the care-report artifact (" in out.err
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["care-report"])))
    mine = {str(a.id): a for a in arts}
    published = mine[doc["published_artifact_id"]]
    assert published.type == "markdown"
    with get_client(sync_client=True) as client:  # a run of the care-report flow, which a schedule can run too
        assert client.read_flow(client.read_flow_run(published.flow_run_id).flow_id).name == "care-report"
    lines = str(published.data).splitlines()
    assert lines[0] == f"# CaRE report {doc['start']} -> {doc['end']}"
    assert lines[2].startswith("| flow | jobs | segments | kWh |") and any(line.startswith(f"| {LEGACY} | 2 | 2 (2/0/0) |") for line in lines)
    assert any(line.startswith(f"total: {doc['total']['jobs']} jobs, ") for line in lines)
    assert f"saved {doc['total']['saved_g']['value']:,.1f} gCO2eq" in published.description
    assert len(mine) >= 2  # each publication is a new version of the same key
    assert any("No care-realized artifacts in this period" in str(a.data) for a in arts)


def test_a_report_of_some_flows_is_published_under_its_own_key_and_says_which(period, capsys):
    """Review 20 #2: an ad-hoc --flow publication became the latest version of the full history."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from care_flows.cli.report import report_key

    assert main(["report", "--start", period["start"], "--end", period["end"], "--flow", SPLIT, "--publish", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    key = report_key([SPLIT])
    assert key == "care-report-report-split-etl"
    with get_client(sync_client=True) as client:
        [art] = [a for a in client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
                 if str(a.id) == doc["published_artifact_id"]]
    assert str(art.data).startswith(f"# CaRE report of {SPLIT} {doc['start']} -> {doc['end']}")
    assert art.description.startswith(f"CaRE report of {SPLIT} ")


def test_the_report_flows_parameters_as_a_schedule_uses_them(period):
    """Review 20 #5: since=None reported 7 days (the flow says 1d); end now defaults to the run's
    scheduled start, so a daily schedule's periods meet however late its runs start."""
    from prefect import get_client
    from prefect.flow_engine import run_flow

    from care_flows.orchestration.report_flow import report_flow

    state = report_flow(since=None, return_state=True)
    doc = state.result()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert pd.Timestamp(doc["end"]) == pd.Timestamp(run.expected_start_time)
    assert pd.Timestamp(doc["end"]) - pd.Timestamp(doc["start"]) == pd.Timedelta("1d")
    given = report_flow(since="1h", start=period["start"], end=period["end"])  # start, when given, replaces since
    assert (given["start"], given["end"]) == (pd.Timestamp(period["start"]).isoformat(), pd.Timestamp(period["end"]).isoformat())
    bad = run_flow(report_flow, parameters={"since": "0s"}, return_type="state")
    assert bad.is_failed() and "since '0s' must be positive, e.g. 7d or 24h" in bad.message and "--since" not in bad.message


def test_an_api_url_without_api_is_one_line_with_publish_too(prefect_harness, monkeypatch, capsys):
    """Review 20 #1: with --publish, Prefect's version check wrapped the 404 in a RuntimeError: 'internal error', exit 1."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    root = PREFECT_API_URL.value().rstrip("/").removesuffix("/api")
    monkeypatch.setenv("PREFECT_API_URL", root)
    with temporary_settings({PREFECT_API_URL: root}):
        assert main(["report", "--since", "1d"]) == 2
        plain = capsys.readouterr().err
        assert main(["report", "--since", "1d", "--publish"]) == 2
        published = capsys.readouterr().err.splitlines()[-1]
    assert plain.startswith(f"error: the Prefect API at {root} answered HTTP 404")
    assert published.startswith(f"error: the Prefect API at {root} answered HTTP 404") and "internal error" not in published


def test_a_password_in_the_api_url_is_not_printed_nor_in_the_json(prefect_harness, monkeypatch, capsys):
    """Review 38c M1: `care report` echoed PREFECT_API_URL with its user:password (JSON, --publish, errors)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = PREFECT_API_URL.value().replace("://", "://admin:pw-SECRET-777@", 1)
    monkeypatch.setenv("PREFECT_API_URL", url)
    with temporary_settings({PREFECT_API_URL: url}):
        assert main(["report", "--since", "1d", "--json"]) == 0
        out, err = capsys.readouterr()
        assert main(["report", "--since", "1d", "--publish"]) == 0
        published = capsys.readouterr()
        bad = url.replace("/api", "")  # a 404 at the root: the HTTP-status error names the URL too
        monkeypatch.setenv("PREFECT_API_URL", bad)
        with temporary_settings({PREFECT_API_URL: bad}):
            assert main(["report", "--since", "1d"]) == 2
            failed = capsys.readouterr().err
    assert json.loads(out)["api_url"].startswith("http://***@127.0.0.1")
    assert "published as" in published.out + published.err and "http://***@127.0.0.1" in published.out + published.err
    assert "answered HTTP 404" in failed
    assert "pw-SECRET-777" not in out + err + published.out + published.err + failed


def test_a_connection_error_under_a_care_error_is_not_taken_for_the_prefect_api():
    """Review 20 #4: only Prefect's own 'Failed to reach API' wrapper is looked through."""
    from care_flows.errors import AwsError
    from care_flows.orchestration.controller import prefect_api_error

    try:
        try:
            raise ConnectionError("S3 endpoint refused")
        except ConnectionError as cause:
            raise AwsError("could not read run records") from cause
    except AwsError as exc:
        assert prefect_api_error(exc) is None


def test_a_flow_name_that_matches_nothing_gets_the_names_that_do(period, capsys):
    """Review 19 #7: `--flow nightly_training` (the Python name) reported nothing, without a hint."""
    assert main(["report", "--start", period["start"], "--end", period["end"], "--flow", "report_split_etl"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no care-realized artifacts of flow report_split_etl created between ")
    assert f"{SPLIT}" in out.split("flows with care-realized artifacts in this period: ")[1]
    assert out.rstrip().endswith(f"(did you mean {SPLIT!r}?)")


def test_the_report_flow_loads_from_its_entrypoint_so_it_can_be_served_or_deployed():
    from prefect.flows import load_flow_from_entrypoint

    from care_flows.orchestration.report_flow import report_flow

    loaded = load_flow_from_entrypoint(report_flow._entrypoint)  # what a served or deployed run loads
    assert loaded.name == "care-report" and set(loaded.parameters.properties) == {"since", "start", "end", "flows"}


def test_an_unreachable_api_names_the_url_and_the_fix(monkeypatch, capsys):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    url = f"http://127.0.0.1:{port}/api"
    monkeypatch.setenv("PREFECT_API_URL", url)
    with temporary_settings({PREFECT_API_URL: url}):  # the session harness's settings context would win over the env
        assert main(["report", "--since", "1d"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: cannot reach the Prefect API at {url}") and "PREFECT_API_URL" in err and err.count("\n") == 1
        assert main(["report", "--since", "1d", "--publish"]) == 2
        err = capsys.readouterr().err.splitlines()
        assert err[-1].startswith(f"error: cannot reach the Prefect API at {url}")


def test_saved_is_the_intensity_gain_on_the_energy_used_not_a_duration_error() -> None:
    """Review 16 #1: a 1-second run of a job planned for an hour, on a flat grid, reported 99.97 % saved
    (the plan's hour-long baseline minus one second's emissions); a failed run reported 98 %."""
    from care_flows.cli.report import summarize

    flat = {"flow": "f", "outcome": "completed", "realized_kwh": 0.0001, "realized_g_per_kwh": 200.0, "realized_g": 0.02,
            "realized_usd": 0.00003, "expected_g": 20.0, "expected_usd": 0.1, "baseline_g": 20.0, "baseline_g_per_kwh": 200.0,
            "baseline_realized_g_per_kwh": 200.0, "realized_from": "electricitymaps history"}
    failed = {**flat, "outcome": "failed", "realized_g_per_kwh": 20.0, "realized_g": 0.002}
    shifted = {**flat, "realized_g_per_kwh": 50.0, "realized_g": 0.005}
    rows = {r["flow"]: r for r in summarize([{**flat, "job": "a"}, {**failed, "flow": "g", "job": "b"}, {**shifted, "flow": "h", "job": "c"}])["flows"]}
    assert rows["f"]["saved_g"] == {"value": 0.0, "jobs": 1} and rows["f"]["saved_pct"]["value"] == 0.0
    assert rows["g"]["saved_g"] == {"value": None, "jobs": 0}  # a failed run's work is not done: nothing saved
    assert rows["h"]["saved_pct"]["value"] == pytest.approx(75.0)  # 200 -> 50 g/kWh on the same energy
    # review 17 #2: an observed realized intensity against the plan's forecast baseline counted the
    # forecast's error as saved (-28 % / +24 % for runs nothing shifted); without an observed baseline
    # there is no baseline, and a forecast realized intensity is compared with the forecast baseline
    observed_only = {**flat, "baseline_realized_g_per_kwh": None, "realized_g_per_kwh": 250.0, "realized_g": 0.025}
    forecast_both = {**observed_only, "realized_from": "embedded forecast", "realized_g_per_kwh": 200.0, "realized_g": 0.02}
    rows = {r["flow"]: r for r in summarize([{**observed_only, "job": "a"}, {**forecast_both, "flow": "g", "job": "b"}])["flows"]}
    assert rows["f"]["saved_g"] == {"value": None, "jobs": 0} and rows["g"]["saved_g"] == {"value": 0.0, "jobs": 1}
