"""Bad input to the library: policies, JOBS.csv, carbon CSVs and provider payloads (hypothesis).

Each property runs at least 500 examples. The contract: the call succeeds, or raises a typed
CaRE exception (``ConfigError`` for policies, ``DataError`` naming the row for JOBS.csv,
``DataError``/``ConfigError`` for carbon CSVs, ``ProviderResponseError``/``DataError`` for
provider bodies); never ``KeyError``, ``TypeError``, ``OverflowError``, ``AttributeError``...
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from care_flows.errors import CareError, ConfigError, DataError, ProviderError, ProviderResponseError
from care_flows.policy import CarePolicy, load_policy
from care_flows.simulate.jobs import read_jobs_csv
from care_flows.signals import TraceSignal

# A HypothesisDeprecationWarning about `random` in full runs comes from Prefect's websocket keepalive,
# not these strategies: it is filtered in pyproject.toml, where the trace is written down.

SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "providers"

# ------------------------------------------------------------------------------------- policy
FIELDS = sorted(CarePolicy.model_fields)
scalars = (
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([
        "", "2h", "-1h", "0s", "P1D", "PT-1H", "P", "1e400h", "10000000d", "eu-south-2", "eu-north-1", "eu-nowhere-1",
        "carbon", "cost", "latency", "resource", "speed", "lifecycle", "marginal", "x86_64", "arm64", "t3.large", "embedded",
    ])
    | st.text(max_size=10)
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.sampled_from(FIELDS), inner, max_size=4), max_leaves=8)
policy_dicts = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), values, max_size=6)


@SETTINGS
@given(doc=policy_dicts)
def test_random_policy_dicts_give_a_policy_or_a_config_error(doc):
    try:
        policy = load_policy(doc)
    except ConfigError as exc:
        assert "\n" not in str(exc).strip() or str(exc).count("\n") < 3
        return
    assert isinstance(policy, CarePolicy)
    assert policy.home_region in policy.regions


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(doc=policy_dicts, junk=st.sampled_from(["", "{", "[]", "null", "1", '{"regions": "eu-south-2"}', "{\"a\": NaN}"]))
def test_random_policy_json_text_gives_a_policy_or_a_config_error(doc, junk):
    text = json.dumps(doc, default=str) if not junk else junk
    try:
        load_policy(text)
    except ConfigError:
        pass


def test_policy_with_non_string_keys_is_a_config_error():
    with pytest.raises(ConfigError):
        load_policy({1: "x"})  # a dict from YAML/JSON-like sources may carry non-string keys


# ----------------------------------------------------------------------------------- JOBS.csv
GOOD_ROW = {"job_id": "j", "arrival": "2023-06-01T08:00:00Z", "duration_h": "1", "slack_h": "6", "deadline": "", "cpus": "1", "interruptible": "false", "instance_type": "m5.large", "region": ""}
cell = st.sampled_from([
    "", " ", "0", "-1", "1", "1.5", "1e308", "1e-300", "nan", "inf", "-inf", "1e400", "99999999999", "abc", "true", "yes",
    "2023-06-01T08:00:00Z", "2023-06-01T08:00:00", "2023-06-01T08:00:00+02:00", "2023-02-30T00:00Z", "1677-09-21T00:00Z",
    "2262-04-11T23:00Z", "9999-01-01T00:00Z", "0001-01-01T00:00Z", "eu-south-2", "eu-nowhere-1", "m5.large", "x1.bogus",
    '"quoted,comma"', "\u00e9\u2603",
]) | st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=8)


@st.composite
def jobs_csv(draw) -> tuple[str, int]:
    cols = draw(st.lists(st.sampled_from(list(GOOD_ROW)), min_size=2, max_size=9, unique=True))
    if draw(st.booleans()):
        cols = [c for c in ["job_id", "arrival", "duration_h", "slack_h"] if c not in cols] + cols
    n = draw(st.integers(0, 6))
    rows = []
    for i in range(n):
        row = {c: GOOD_ROW[c] for c in cols}
        row["job_id"] = f"j{i}" if "job_id" in row else None
        for c in draw(st.lists(st.sampled_from(cols), max_size=3)):
            row[c] = draw(cell)
        rows.append(",".join("" if row[c] is None else str(row[c]).replace(",", ";") for c in cols))
    return ",".join(cols) + "\n" + "\n".join(rows) + ("\n" if rows else ""), n


@SETTINGS
@given(case=jobs_csv())
def test_random_jobs_csv_is_valid_or_a_data_error_naming_the_row(case):
    text, n = case
    try:
        jobs = read_jobs_csv(text if "\n" in text else text + "\n")
    except DataError as exc:
        msg = str(exc)
        assert "\n" not in msg
        assert " line " in msg or "column" in msg or "no rows" in msg or "parsed" in msg, msg
        return
    frame = jobs.frame
    assert len(frame) == n
    assert (frame["deadline"] >= frame["arrival"] + pd.to_timedelta(frame["duration_h"], unit="h")).all()
    assert np.isfinite(frame["duration_h"]).all() and (frame["duration_h"] > 0).all()


@pytest.mark.parametrize(
    "row",
    [
        "a,2023-06-01T08:00:00Z,1e300,6",  # duration overflows a timedelta
        "a,2023-06-01T08:00:00Z,1,1e300",  # slack overflows
        "a,2262-04-11T23:00:00Z,2,6",  # arrival + duration past pandas' last timestamp
    ],
)
def test_jobs_csv_with_huge_numbers_is_a_data_error_naming_the_row(row):
    with pytest.raises(DataError, match="line 2"):
        read_jobs_csv("job_id,arrival,duration_h,slack_h\n" + row + "\n")


# ---------------------------------------------------------------------------- carbon CSV trace
HEADERS = [
    "Datetime (UTC),Zone id,Carbon intensity gCO₂eq/kWh (Life cycle)",
    "Datetime (UTC),Zone Id,Carbon Intensity gCO₂eq/kWh (LCA),Carbon Intensity gCO₂eq/kWh (direct)",
    "time,g_per_kwh",
    "Datetime (UTC),Carbon intensity gCO₂eq/kWh (direct)",
    "foo,bar",
    "",
]


@st.composite
def carbon_csv(draw) -> bytes:
    header = draw(st.sampled_from(HEADERS))
    ncols = max(1, header.count(",") + 1)
    n = draw(st.integers(0, 30))
    start = pd.Timestamp("2023-06-01T00:00Z") + pd.Timedelta(hours=draw(st.integers(0, 100)))
    step = draw(st.sampled_from(["1h", "1h", "15min", "5min"]))
    lines = [header]
    for i in range(n):
        t = (start + i * pd.Timedelta(step)).strftime("%Y-%m-%d %H:%M:%S")
        fields = [t] + (["ES"] if "Zone" in header else []) + [f"{100 + i}"] * (ncols - 1 - ("Zone" in header))
        lines.append(",".join(fields[:ncols]))
    ops = draw(st.lists(st.sampled_from(["drop", "dup", "swap", "cell", "offset", "truncate", "junkline", "bom", "blankline"]), max_size=3))
    for op in ops:
        if len(lines) < 2:
            break
        i = draw(st.integers(1, len(lines) - 1))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(1, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "cell":
            parts = lines[i].split(",")
            parts[draw(st.integers(0, len(parts) - 1))] = draw(cell)
            lines[i] = ",".join(parts)
        elif op == "offset":
            lines[i] = lines[i].replace(":00:00", ":00:00+02:00", 1)
        elif op == "truncate":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif op == "junkline":
            lines.insert(i, draw(st.text(max_size=20)).replace("\r", ""))
        elif op == "bom":
            lines[0] = "\ufeff" + lines[0]
        elif op == "blankline":
            lines.insert(i, "")
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass") if draw(st.booleans()) else ("\n".join(lines)).encode("utf-8", "replace")


@SETTINGS
@given(data=carbon_csv(), repair=st.sampled_from([None, "interpolate"]), kind=st.sampled_from(["lifecycle", "direct"]))
def test_random_carbon_csv_is_a_trace_or_a_typed_error(tmp_path_factory, data, repair, kind):
    path = tmp_path_factory.getbasetemp() / "carbon-hypothesis.csv"
    path.write_bytes(data)
    try:
        sig = TraceSignal.from_csv(path, kind=kind, repair=repair)
    except (DataError, ConfigError) as exc:
        assert "\n" not in str(exc)
        return
    for zone in sig.zones():
        s = sig.trace(zone)
        assert s.index.is_monotonic_increasing and not s.index.has_duplicates
        assert np.isfinite(s.to_numpy()).all() and (s.to_numpy() >= 0).all()


# --------------------------------------------------------------------------- provider payloads
class _Resp:
    def __init__(self, body: Any, raw: bytes | None = None) -> None:
        self.status_code = 200
        self.headers: dict[str, str] = {}
        self._body, self._raw = body, raw

    def json(self) -> Any:
        if self._raw is not None:
            return json.loads(self._raw)
        return self._body


class _Session:
    """An injected requests transport: every GET answers 200 with the next scripted body."""

    def __init__(self, bodies: dict[str, Any]) -> None:
        self.bodies = bodies

    def get(self, url: str, params=None, timeout=None, **kw) -> _Resp:  # noqa: ANN001
        for suffix, body in self.bodies.items():
            if url.endswith(suffix):
                return body if isinstance(body, _Resp) else _Resp(body)
        return _Resp({"token": "t"}) if url.endswith("/login") else _Resp({})


def _load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
    | st.sampled_from(["2024-05-01T10:00:00Z", "2024-05-01T10:00:00.000Z", "2024-05-01", "lbs_co2_per_mwh", "kg_per_mwh"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12) | st.sampled_from(["data", "forecast", "datetime", "carbonIntensity", "point_time", "value", "meta", "units", "from", "to", "intensity", "regionid"]), inner, max_size=4),
    max_leaves=10,
)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:6]):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def mutated(draw, doc: Any) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            return draw(json_values)
        p = draw(st.sampled_from(paths))
        parent = doc
        for k in p[:-1]:
            parent = parent[k]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[p[-1]]
        else:
            parent[p[-1]] = draw(json_values)
    return doc


PROVIDERS = {
    "em-forecast": ("/carbon-intensity/forecast", "electricitymaps_forecast.json"),
    "em-past-range": ("/carbon-intensity/past-range", "electricitymaps_past_range.json"),
    "em-latest": ("/carbon-intensity/latest", "electricitymaps_latest.json"),
    "wt-forecast": ("/v3/forecast", "watttime_forecast.json"),
    "wt-historical": ("/v3/historical", "watttime_historical.json"),
    "wt-region": ("/v3/region-from-loc", "watttime_region_from_loc.json"),
    "gb-forecast": ("/fw48h", "gb_national_fw48h.json"),
    "gb-regional": ("/fw48h/regionid/13", "gb_regional_fw48h.json"),
    "gb-range": ("/2024-05-01T10:00Z", "gb_national_range.json"),
}
NOW = pd.Timestamp("2024-05-01T09:58:00Z")


def _call(which: str, session: _Session) -> pd.Series:
    from care_flows.signals.electricitymaps import ElectricityMapsSignal
    from care_flows.signals.gb import GBCarbonSignal
    from care_flows.signals.watttime import WattTimeSignal

    kw = dict(session=session, sleep=lambda s: None, clock=lambda: NOW, max_retries=0)
    if which.startswith("em"):
        sig = ElectricityMapsSignal("tok", **kw)
        if which == "em-forecast":
            return sig.forecast("ES", "2024-05-01T10:00Z", "6h")
        if which == "em-latest":
            return sig.latest("ES")
        return sig.history("ES", "2023-06-01T00:00Z", "2023-06-01T06:00Z")
    if which.startswith("wt"):
        sig = WattTimeSignal("u", "p", **kw)
        if which == "wt-region":
            return sig.forecast("us-west-1", "2024-05-01T10:00Z", "1h")
        if which == "wt-forecast":
            return sig.forecast("CAISO_NORTH", "2024-05-01T10:00Z", "1h")
        return sig.history("CAISO_NORTH", "2024-05-01T08:00Z", "2024-05-01T09:00Z")
    sig = GBCarbonSignal(**kw)
    if which == "gb-regional":
        return sig.forecast("GB-13", "2024-05-01T10:00Z", "2h")
    if which == "gb-range":
        return sig.history("GB", "2024-05-01T08:00Z", "2024-05-01T10:00Z")
    return sig.forecast("GB", "2024-05-01T10:00Z", "2h")


@st.composite
def payload_case(draw):
    which = draw(st.sampled_from(sorted(PROVIDERS)))
    suffix, fixture = PROVIDERS[which]
    base = _load(fixture)
    how = draw(st.sampled_from(["mutate", "mutate", "mutate", "random", "raw"]))
    if how == "mutate":
        body: Any = draw(mutated(base))
    elif how == "random":
        body = draw(json_values)
    else:
        raw = json.dumps(base).encode()
        cut = draw(st.integers(0, len(raw)))
        body = _Resp(None, raw=raw[:cut] + draw(st.binary(max_size=4)))
    bodies = {suffix: body}
    if which == "wt-region":  # the forecast itself is valid, the region lookup is what is fuzzed
        bodies["/v3/forecast"] = _load("watttime_forecast.json")
    return which, bodies


@SETTINGS
@given(case=payload_case())
def test_random_provider_payloads_give_a_series_or_a_provider_error(case):
    which, bodies = case
    try:
        s = _call(which, _Session(bodies))
    except (ProviderError, DataError, ConfigError) as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(s, pd.Series) and s.name == "g_per_kwh"
    v = s.to_numpy(dtype=float)
    assert np.isfinite(v).all() and (v >= 0).all(), (which, s)
    assert s.index.is_monotonic_increasing and not s.index.has_duplicates


@pytest.mark.parametrize("which", sorted(PROVIDERS))
def test_recorded_payloads_parse(which):
    suffix, fixture = PROVIDERS[which]
    bodies = {suffix: _load(fixture)}
    if which == "wt-region":
        bodies["/v3/forecast"] = _load("watttime_forecast.json")
    s = _call(which, _Session(bodies))
    assert len(s) >= 1
