"""S3 usage histories over HTTP against moto_server: round trip, caching, errors, and a @care flow
that records to S3 and is sized from it (CARE_USAGE_STORE=s3://...)."""

from __future__ import annotations

import logging
import re

import pandas as pd
import pytest

from care_flows.aws.clients import AwsClients, add_call_observer, remove_call_observer
from care_flows.aws.usage_store import MAX_OBJECTS, S3UsageStore, parse_s3_url
from care_flows.errors import AwsError, ConfigError
from test_aws_support import aws, moto_url  # noqa: F401

BUCKET = "care-usage-test"


def _samples(start: str, minutes: int, cpu: float, mem: float = 2.0) -> pd.DataFrame:
    t = pd.date_range(start, periods=minutes * 6, freq="10s", tz="UTC")
    return pd.DataFrame({"time": t, "cpu_vcpu": cpu, "memory_gib": mem, "n_processes": 1})


@pytest.fixture
def bucket(aws: AwsClients) -> AwsClients:
    aws.client("s3", "eu-north-1").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    return aws


def test_round_trip_one_object_per_run_and_only_new_objects_are_read(bucket: AwsClients) -> None:
    store = S3UsageStore(f"s3://{BUCKET}/team-a", clients=bucket, region="eu-north-1")
    store.append("etl/nightly", _samples("2026-01-02T00:00Z", 3, 2.0))
    store.append("etl/nightly", _samples("2026-01-01T00:00Z", 2, 1.0))  # an older run written later
    other = S3UsageStore(f"s3://{BUCKET}/team-a", clients=bucket, region="eu-north-1")  # a second process
    other.append("etl/nightly", _samples("2026-01-03T00:00Z", 1, 4.0))
    keys = [o["Key"] for o in bucket.client("s3", "eu-north-1").list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert len(keys) == 3 and all(re.fullmatch(r"team-a/etl__nightly/2026010\dT000000-[0-9a-f]{12}\.csv", k) for k in keys)

    calls: list[tuple[str, str]] = []
    observer = lambda service, op: calls.append((service, op))  # noqa: E731
    add_call_observer(observer)
    try:
        frame = store.load("etl/nightly")
        assert len(frame) == 36 and frame["time"].is_monotonic_increasing
        assert frame["cpu_vcpu"].tolist() == [1.0] * 12 + [2.0] * 18 + [4.0] * 6
        assert calls.count(("s3", "GetObject")) == 3
        calls.clear()
        store.append("etl/nightly", _samples("2026-01-04T00:00Z", 1, 3.0))
        assert len(store.load("etl/nightly")) == 42
        assert calls.count(("s3", "GetObject")) == 1  # the three it had read are not downloaded again
    finally:
        remove_call_observer(observer)
    assert store.load("never-ran").empty


def test_only_the_newest_objects_are_read(bucket: AwsClients, monkeypatch: pytest.MonkeyPatch) -> None:
    import care_flows.aws.usage_store as mod

    monkeypatch.setattr(mod, "MAX_OBJECTS", 2)
    store = S3UsageStore(f"s3://{BUCKET}/cap", clients=bucket, region="eu-north-1")
    for day, cpu in ((1, 1.0), (2, 2.0), (3, 3.0)):
        store.append("etl", _samples(f"2026-01-0{day}T00:00Z", 1, cpu))
    assert sorted(set(store.load("etl")["cpu_vcpu"])) == [2.0, 3.0]
    assert MAX_OBJECTS == 500


def test_errors_are_one_line_and_name_the_place(aws: AwsClients, bucket: AwsClients, caplog: pytest.LogCaptureFixture) -> None:
    missing = S3UsageStore("s3://no-such-care-bucket/x", clients=aws, region="eu-north-1")
    with pytest.raises(AwsError, match=r"s3://no-such-care-bucket/x/etl/.*s3:ListBucket") as exc:
        missing.load("etl")
    assert "\n" not in str(exc.value)
    with pytest.raises(AwsError, match=r"s3://no-such-care-bucket/x/etl/.*s3:PutObject"):
        missing.append("etl", _samples("2026-01-01T00:00Z", 1, 1.0))
    # one malformed object is skipped with a warning naming it; the rest of the history is kept
    good = S3UsageStore(f"s3://{BUCKET}/p", clients=bucket, region="eu-north-1")
    good.append("etl", _samples("2026-01-02T00:00Z", 2, 1.0))
    bucket.client("s3", "eu-north-1").put_object(Bucket=BUCKET, Key="p/etl/20260101T000000-bad.csv", Body=b"time,cpu_vcpu\nnot a time,1\n")
    with caplog.at_level(logging.WARNING, logger="care_flows.aws"):
        assert len(good.load("etl")) == 12
    assert "skipping malformed usage object s3://care-usage-test/p/etl/20260101T000000-bad.csv" in caplog.text
    # a file that parses but holds a value that is not a number is skipped the same way
    bucket.client("s3", "eu-north-1").put_object(Bucket=BUCKET, Key="p/etl/20260101T000001-abc.csv",
                                                 Body=b"time,cpu_vcpu,memory_gib,n_processes\n2026-01-01T00:00:01+00:00,abc,1,1\n")
    with caplog.at_level(logging.WARNING, logger="care_flows.aws"):
        assert len(good.load("etl")) == 12
    assert "20260101T000001-abc.csv" in caplog.text
    n, digest = good.fingerprint("etl")
    assert n == 3 and len(digest) == 40
    good.append("etl", _samples("2026-01-03T00:00Z", 1, 1.0))
    assert good.fingerprint("etl")[0] == 4  # changes with every appended run
    assert good.fingerprint("nothing-here") is None
    for bad in ("s3:/x", "https://bucket/x"):
        with pytest.raises(ConfigError, match="is not an S3 URL"):
            parse_s3_url(bad)
    with pytest.raises(ConfigError, match="bucket name 'B' is not valid; S3 bucket names are 3-63 characters"):
        parse_s3_url("s3://B/x")


@pytest.mark.usefixtures("prefect_harness")
def test_a_care_flow_records_to_s3_and_is_sized_from_it(bucket: AwsClients, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from prefect import flow

    from care_flows.orchestration import care
    from care_flows.pricing import EmbeddedPrices
    from care_flows.usage_capture import default_usage_store

    monkeypatch.setenv("CARE_USAGE_STORE", f"s3://{BUCKET}/histories")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)  # boto3's own setting: the default store's clients use it
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    # flush from the sampler thread while the body runs (as a run longer than a minute does): that
    # thread sees no run context, and the object must still be named after the flow run
    monkeypatch.setattr("care_flows.orchestration.learned_sizing.FLUSH_EVERY_S", 0.2)
    t0 = pd.Timestamp.now(tz="UTC").floor("h")  # the real clock: only its runs record a duration
    fc = {"eu-north-1": pd.Series([20.0] * 12, index=pd.date_range(t0, periods=12, freq="1h"), name="g_per_kwh")}
    pol = dict(home_region="eu-north-1", regions=["eu-north-1"], expected_duration="1h", deadline_within="8h", vcpu=2, memory_gib=4)

    @care(policy=pol, signal=fc)
    @flow(name="s3-sized")
    def s3_sized() -> int:
        import time

        time.sleep(1.0)
        return 1

    first = s3_sized(return_state=True)
    assert first.result() == 1
    s3 = bucket.client("s3", "eu-north-1")
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="histories/")["Contents"]]
    [key] = [k for k in listed if k.endswith(".csv")]
    # named after the flow run, so an operator can map the object to its run
    assert re.fullmatch(rf"histories/s3-sized/\d{{8}}T\d{{6}}-{first.state_details.flow_run_id}-[0-9a-f]{{12}}\.csv", key), key
    # and the completed run's duration, for planning later runs (learned_duration)
    [record] = [k for k in listed if not k.endswith(".csv")]
    assert re.fullmatch(rf"histories/s3-sized/runs/\d{{8}}T\d{{6}}-{first.state_details.flow_run_id}\.json", record), record
    S3UsageStore(f"s3://{BUCKET}/histories", clients=bucket, region="eu-north-1").append("s3-sized", _samples("2026-01-01T00:00Z", 15, 6.0, 20.0))

    state = s3_sized(return_state=True)
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        [art] = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
                                                                    key=ArtifactFilterKey(any_=["care-decision-s3-sized"])))
    md = str(art.data)
    assert "Sized from**: usage history 's3-sized'" in md
    itype = re.search(r"instance type: `([^`]+)`", md).group(1)  # type: ignore[union-attr]
    row = EmbeddedPrices().catalog("eu-north-1").set_index("instance_type").loc[itype]
    assert row["vcpu"] >= 6.0 * 1.2 and row["memory_gib"] >= 20.5 * 1.2
    assert isinstance(default_usage_store(), S3UsageStore)


def test_cli_usage_reads_an_s3_history(bucket: AwsClients, moto_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    import json

    from care_flows.cli import main

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    S3UsageStore(f"s3://{BUCKET}/cli", clients=bucket, region="eu-north-1").append("etl", _samples("2026-01-01T00:00Z", 12, 3.0, 6.0))
    assert main(["usage", "etl", "--usage-dir", f"s3://{BUCKET}/cli", "--region", "eu-north-1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["directory"] == f"s3://{BUCKET}/cli" and doc["minutes_of_running"] == 12
    assert doc["need"]["peak_vcpu"] == pytest.approx(3.0) and doc["need"]["peak_memory_gib"] == pytest.approx(6.5)


def test_a_run_stays_one_object_rewritten_at_every_flush_and_other_readers_see_the_rewrite(bucket: AwsClients) -> None:
    writer = S3UsageStore(f"s3://{BUCKET}/runs", clients=bucket, region="eu-north-1")
    reader = S3UsageStore(f"s3://{BUCKET}/runs", clients=bucket, region="eu-north-1")  # e.g. the controller
    first = _samples("2026-01-01T00:00Z", 2, 1.0)
    writer.append("etl", first.iloc[:6], run_id="run-a")
    before = reader.fingerprint("etl")
    assert len(reader.load("etl")) == 6
    writer.append("etl", first.iloc[6:], run_id="run-a")  # the next minute's flush of the same run
    writer.append("etl", _samples("2026-01-02T00:00Z", 1, 2.0), run_id="run-b")
    keys = [o["Key"] for o in bucket.client("s3", "eu-north-1").list_objects_v2(Bucket=BUCKET, Prefix="runs/")["Contents"]]
    assert sorted(keys) == ["runs/etl/20260101T000000-run-a.csv", "runs/etl/20260102T000000-run-b.csv"]
    assert reader.fingerprint("etl") != before
    frame = reader.load("etl")  # the cached first version of run-a is replaced by the rewritten one
    assert len(frame) == 12 + 6 and frame["time"].is_unique


def test_a_memoised_plan_lists_the_history_once(bucket: AwsClients) -> None:
    from care_flows.orchestration import learned_sizing
    from care_flows.policy import CarePolicy

    store = S3UsageStore(f"s3://{BUCKET}/plans", clients=bucket, region="eu-north-1")
    store.append("etl", _samples("2026-01-01T00:00Z", 15, 2.0))
    calls: list[tuple[str, str]] = []
    observer = lambda service, op: calls.append((service, op))  # noqa: E731
    add_call_observer(observer)
    try:
        learned_sizing._MEMO.clear()
        policy = CarePolicy(size_from_usage=True)
        learned = learned_sizing.need_for_policy(policy, "etl", store=store)
        assert learned is not None and learned.need.peak_vcpu >= 2.0
        assert calls.count(("s3", "ListObjectsV2")) == 1 and calls.count(("s3", "GetObject")) == 1
        calls.clear()
        assert learned_sizing.need_for_policy(policy, "etl", store=store) is learned  # memoised: one LIST, no GET
        assert calls == [("s3", "ListObjectsV2")]
        calls.clear()
        store.fingerprint("etl")
        assert len(store.load("etl")) == 90 and len(store.load("etl")) == 90  # the second load lists again
        assert calls.count(("s3", "ListObjectsV2")) == 2
    finally:
        remove_call_observer(observer)


def test_a_run_object_is_named_after_its_flow_run_from_the_first_flush(bucket: AwsClients, monkeypatch: pytest.MonkeyPatch) -> None:
    """A care-ec2 instance (or any worker) sets PREFECT__FLOW_RUN_ID, which the sampler thread's flushes see too."""
    flow_run_id = "65c2f513-0000-4000-8000-0000000000ab"
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", flow_run_id)
    store = S3UsageStore(f"s3://{BUCKET}/named", clients=bucket, region="eu-north-1")
    samples = _samples("2026-11-29T02:12:50Z", 2, 1.0)
    store.append("etl", samples.iloc[:6], run_id="7bf0e16bbc91")
    monkeypatch.delenv("PREFECT__FLOW_RUN_ID")  # a later flush that does not know it keeps the run's one object
    store.append("etl", samples.iloc[6:], run_id="7bf0e16bbc91")
    keys = [o["Key"] for o in bucket.client("s3", "eu-north-1").list_objects_v2(Bucket=BUCKET, Prefix="named/")["Contents"]]
    assert keys == [f"named/etl/20261129T021250-{flow_run_id}-7bf0e16bbc91.csv"]
    assert len(store.load("etl")) == 12


def test_run_records_round_trip_apart_from_the_samples_and_are_read_once(bucket: AwsClients, caplog: pytest.LogCaptureFixture) -> None:
    from care_flows.usage_capture import RunRecord

    store = S3UsageStore(f"s3://{BUCKET}/team-a", clients=bucket, region="eu-north-1")
    store.append("etl", _samples("2026-01-01T00:00Z", 2, 1.0))
    for i, minutes in enumerate([30, 45, 40]):
        store.append_run("etl", RunRecord(f"65c2f513-run-{i}", pd.Timestamp("2026-01-01T01:00Z") + pd.Timedelta(days=i), minutes * 60.0))
    s3 = bucket.client("s3", "eu-north-1")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="team-a/etl/runs/")["Contents"])
    assert keys[0] == "team-a/etl/runs/20260101T010000-65c2f513-run-0.json"
    assert len(store.load("etl")) == 12  # the samples' listing reads .csv objects only
    s3.put_object(Bucket=BUCKET, Key="team-a/etl/runs/20260105T000000-bad.json", Body=b"{not json")

    calls: list[tuple[str, str]] = []
    observer = lambda service, op: calls.append((service, op))  # noqa: E731
    add_call_observer(observer)
    try:
        other = S3UsageStore(f"s3://{BUCKET}/team-a", clients=bucket, region="eu-north-1")  # a fresh process (a trigger run)
        with caplog.at_level(logging.WARNING):
            assert [r.duration_s for r in other.load_runs("etl")] == [1800.0, 2700.0, 2400.0]
        assert "skipping malformed run record s3://care-usage-test/team-a/etl/runs/20260105T000000-bad.json" in caplog.text
        assert calls.count(("s3", "GetObject")) == 4
        calls.clear()
        assert len(other.load_runs("etl")) == 3 and calls.count(("s3", "GetObject")) == 0  # records are written once: read once
    finally:
        remove_call_observer(observer)
    assert other.load_runs("never-ran") == []


def test_an_unreachable_endpoint_is_not_read_again_for_a_while_but_writes_are_tried() -> None:
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clients = AwsClients(endpoint_url=f"http://127.0.0.1:{port}", max_attempts=2)
    store = S3UsageStore(f"s3://{BUCKET}/x", clients=clients, region="eu-north-1")
    with pytest.raises(AwsError, match=r"could not list usage history s3://care-usage-test/x/etl/"):
        store.fingerprint("etl")
    calls: list[tuple[str, str]] = []
    observer = lambda service, op: calls.append((service, op))  # noqa: E731
    add_call_observer(observer)
    try:
        for call in (lambda: store.load_runs("etl"), lambda: store.load("etl")):
            with pytest.raises(AwsError, match=r"not retried for another \d+ s\); check the endpoint and the network"):
                call()
        assert calls == []  # planning's reads did not wait for the same failure again
        with pytest.raises(AwsError, match="could not write usage history object"):
            store.append("etl", _samples("2026-01-01T00:00Z", 1, 1.0), run_id="r1")
        assert calls  # a write is always tried: samples are not dropped because a read failed earlier
    finally:
        remove_call_observer(observer)


def test_a_stalled_endpoint_costs_one_short_timeout_then_reads_fail_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review 46e M2: an endpoint that accepts connections and never answers (a broken proxy) held a 3 s
    run for 8 minutes: each of five calls waited 3 x 30 s, and a read timeout did not start the cool-down."""
    import socket
    import threading
    import time

    from care_flows.aws import usage_store

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert usage_store.STALL_TIMEOUT_S <= 10
    held: list[socket.socket] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def accept_and_stall() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])  # never answered
            except OSError:
                continue

    threading.Thread(target=accept_and_stall, daemon=True).start()
    try:
        clients = AwsClients(endpoint_url=f"http://127.0.0.1:{server.getsockname()[1]}", max_attempts=1, read_timeout_s=0.5)
        store = S3UsageStore(f"s3://{BUCKET}/x", clients=clients, region="eu-north-1")
        began = time.monotonic()
        with pytest.raises(AwsError, match="could not list usage history"):
            store.fingerprint("etl")
        assert time.monotonic() - began < 5
        began = time.monotonic()
        with pytest.raises(AwsError, match=r"not retried for another \d+ s\); check the endpoint and the network"):
            store.load_runs("etl")
        assert time.monotonic() - began < 0.2  # planning's next read does not wait for the same stall
    finally:
        stop.set()
        for conn in held:
            conn.close()
        server.close()


def test_a_failed_flush_handed_over_again_with_the_next_one_is_stored_once(bucket: AwsClients, monkeypatch: pytest.MonkeyPatch) -> None:
    """The @care sampler keeps a batch whose write failed and hands it over with the next one; the store
    used to keep it too, so that minute was stored twice, and a bucket refusing every write grew each
    upload quadratically (review 44d H1). The store keeps only what it wrote."""
    store = S3UsageStore(f"s3://{BUCKET}/flaky", clients=bucket, region="eu-north-1")
    real, failures = store._s3, [1]

    class Flaky:
        def put_object(self, **kwargs):  # type: ignore[no-untyped-def]
            if failures[0]:
                failures[0] -= 1
                raise ConnectionError("connection reset by peer")
            return real().put_object(**kwargs)

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]  # reads go to the real client
            return getattr(real(), name)

    monkeypatch.setattr(store, "_s3", Flaky)
    first, second = _samples("2026-01-01T00:00Z", 1, 1.0), _samples("2026-01-01T00:01Z", 1, 2.0)
    failures[0] = 3
    for _ in range(3):  # the first minute's flush fails three times, as the sampler retries it
        with pytest.raises(AwsError, match="connection reset by peer"):
            store.append("etl", first, run_id="r1")
    assert store._runs[next(iter(store._runs))][1] is None  # nothing kept of what was not written
    store.append("etl", pd.concat([first, second], ignore_index=True), run_id="r1")  # the next one carries both minutes
    frame = S3UsageStore(f"s3://{BUCKET}/flaky", clients=bucket, region="eu-north-1").load("etl")
    assert frame["cpu_vcpu"].tolist() == [1.0] * 6 + [2.0] * 6  # each minute once
    # a write that succeeds ends the read cooldown an unreachable moment started (review 17 #3)
    store._down_until, store._down_why = float("inf"), "connect timeout"
    store.append("etl", _samples("2026-01-01T00:02Z", 1, 3.0), run_id="r1")
    assert len(store.load("etl")) == 18


def test_many_run_records_are_downloaded_concurrently_each_once_and_a_malformed_one_is_skipped(
    bucket: AwsClients, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A trigger run on a fresh instance reads up to MAX_RUN_RECORDS records: several GETs at a time
    (as load does for the samples), not one after the other."""
    import threading
    import time

    from care_flows.usage_capture import RunRecord

    writer = S3UsageStore(f"s3://{BUCKET}/many", clients=bucket, region="eu-north-1")
    for i in range(20):
        writer.append_run("etl", RunRecord(f"run-{i:02d}", pd.Timestamp("2026-01-01T00:00Z") + pd.Timedelta(hours=i), 60.0 * (i + 1)))
    s3 = bucket.client("s3", "eu-north-1")
    s3.put_object(Bucket=BUCKET, Key="many/etl/runs/20260101T053000-bad.json", Body=b'{"run_id": "x"}')  # among the good ones

    reader = S3UsageStore(f"s3://{BUCKET}/many", clients=bucket, region="eu-north-1")  # a fresh process
    real, state, cond = reader._s3, {"in_flight": 0, "peak": 0, "gets": 0}, threading.Condition()
    give_up = time.monotonic() + 5.0  # sequential GETs would each wait for a second one that never comes

    class Watched:
        def get_object(self, **kwargs):  # type: ignore[no-untyped-def]
            with cond:
                state["gets"] += 1
                state["in_flight"] += 1
                state["peak"] = max(state["peak"], state["in_flight"])
                cond.notify_all()
                cond.wait_for(lambda: state["peak"] >= 2, timeout=max(0.0, give_up - time.monotonic()))
            try:
                return real().get_object(**kwargs)
            finally:
                with cond:
                    state["in_flight"] -= 1

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(real(), name)

    monkeypatch.setattr(reader, "_s3", Watched)
    with caplog.at_level(logging.WARNING, logger="care_flows.aws"):
        records = reader.load_runs("etl")
    assert [r.run_id for r in records] == [f"run-{i:02d}" for i in range(20)]  # oldest first
    assert [r.duration_s for r in records] == [60.0 * (i + 1) for i in range(20)]
    warned = [r.getMessage() for r in caplog.records if "malformed run record" in r.getMessage()]
    assert len(warned) == 1 and "s3://care-usage-test/many/etl/runs/20260101T053000-bad.json" in warned[0]
    assert state["gets"] == 21 and state["peak"] >= 2  # every object read once, more than one at a time

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="care_flows.aws"):
        assert len(reader.load_runs("etl")) == 20
    assert state["gets"] == 21 and not caplog.records  # read once per process, the malformed one too
    s3.delete_object(Bucket=BUCKET, Key="many/etl/runs/20260101T053000-bad.json")
    s3.delete_object(Bucket=BUCKET, Key=[k for k in reader._records if "run-00" in k][0])
    assert len(reader.load_runs("etl")) == 19 and len(reader._records) == 19  # deleted records are pruned
    assert state["gets"] == 21


@pytest.mark.usefixtures("prefect_harness")
def test_a_malformed_record_read_in_a_pool_thread_is_still_logged_in_the_flow_run(bucket: AwsClients) -> None:
    """Review 20 #3: records read in pool threads lost the flow run's context, so the warning never
    reached the run's log (Prefect's API handler drops records without a flow run id)."""
    from prefect import flow
    from prefect.context import FlowRunContext

    from care_flows.usage_capture import RunRecord

    writer = S3UsageStore(f"s3://{BUCKET}/ctx", clients=bucket, region="eu-north-1")
    for i in range(3):
        writer.append_run("etl", RunRecord(f"run-{i}", pd.Timestamp("2026-01-01T00:00Z") + pd.Timedelta(hours=i), 60.0))
    bucket.client("s3", "eu-north-1").put_object(Bucket=BUCKET, Key="ctx/etl/runs/20260101T013000-bad.json", Body=b'{"run_id": "x"}')
    reader = S3UsageStore(f"s3://{BUCKET}/ctx", clients=bucket, region="eu-north-1")
    seen: list[tuple[str, bool]] = []

    class InRun(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.getMessage(), FlowRunContext.get() is not None))

    handler = InRun()
    logging.getLogger("care_flows.aws").addHandler(handler)

    @flow
    def trigger() -> int:
        return len(reader.load_runs("etl"))

    try:
        assert trigger() == 3
    finally:
        logging.getLogger("care_flows.aws").removeHandler(handler)
    assert [in_run for message, in_run in seen if "malformed run record" in message] == [True]
