"""Electricity Maps CSV traces: both header schemas, strict validation and the documented repair."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from care_flows.errors import DataError, UnknownZoneError
from care_flows.signals import TraceSignal, read_electricitymaps_csv, series_meta

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"  # ../shared/data beside the repo

REAL = SHARED_DATA / "carbon_intensity" / "electricitymaps_ES_2023_hourly.csv"

OLD = "Datetime (UTC),Country,Zone name,Zone id,Carbon intensity gCO₂eq/kWh (direct),Carbon intensity gCO₂eq/kWh (Life cycle),Carbon-free energy percentage (CFE%),Renewable energy percentage (RE%),Data source,Data estimated,Data estimation method"
NEW = "Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh (direct),Carbon Intensity gCO₂eq/kWh (LCA),Low Carbon Percentage,Renewable Percentage,Data Source,Data Estimated,Data Estimation Method"


def write(tmp_path: Path, rows: list[tuple[str, str, str]], header: str = OLD, zone: str = "ES", name: str = "x.csv") -> Path:
    lines = [header] + [f"{t},Spain,Spain,{zone},{d},{lc},80,50,entsoe.eu,false," for t, d, lc in rows]
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def hours(n: int, start: str = "2023-01-01 00:00:00", freq: str = "h") -> list[str]:
    return [t.strftime("%Y-%m-%d %H:%M:%S") for t in pd.date_range(start, periods=n, freq=freq)]


def good_rows(n: int = 6, freq: str = "h") -> list[tuple[str, str, str]]:
    return [(t, str(80 + i), str(110 + i)) for i, t in enumerate(hours(n, freq=freq))]


@pytest.mark.parametrize("header", [OLD, NEW], ids=["life-cycle-schema", "lca-schema"])
@pytest.mark.parametrize("kind,first", [("lifecycle", 110.0), ("direct", 80.0)])
def test_both_header_schemas_parse(tmp_path, header, kind, first):
    sig = TraceSignal.from_csv(write(tmp_path, good_rows(), header=header), kind=kind)
    s = sig.history("ES", "2023-01-01T00:00Z", "2023-01-01T06:00Z")
    assert s.iloc[0] == first and len(s) == 6 and str(s.index.tz) == "UTC"
    assert series_meta(s).source == "csv" and series_meta(s).signal == kind


def test_real_export_reads_like_the_embedded_data():
    sig = TraceSignal.from_csv({"ES": REAL})
    s = sig.history("eu-south-2", "2023-06-01T00:00Z", "2023-06-02T00:00Z")
    emb = TraceSignal.embedded().history("ES", "2023-06-01T00:00Z", "2023-06-02T00:00Z")
    assert len(s) == 24 and s.tolist() == pytest.approx(emb.tolist())


def test_sub_hourly_csv_works(tmp_path):
    sig = TraceSignal.from_csv(write(tmp_path, good_rows(96, freq="15min")))
    s = sig.history("ES", "2023-01-01T00:00Z", "2023-01-01T01:00Z")
    assert len(s) == 4 and (s.index[1] - s.index[0]) == pd.Timedelta("15min")
    fc = sig.forecast("ES", "2023-01-01T20:00Z", "1h")
    assert len(fc) == 4 and (fc.index[1] - fc.index[0]) == pd.Timedelta("15min")


def test_explicit_utc_offsets_are_accepted(tmp_path):
    rows = [(t.replace(" ", "T") + "+00:00", d, lc) for t, d, lc in good_rows(3)] + [(hours(4)[3].replace(" ", "T") + "Z", "1", "2")]
    s = read_electricitymaps_csv(write(tmp_path, rows))["ES"]
    assert len(s) == 4 and s.iloc[-1] == 2.0


@pytest.mark.parametrize(
    "mutate,pattern",
    [
        (lambda r: r[:2] + r[3:], r"x\.csv: zone ES has a gap at 2023-01-01T02:00:00\+00:00.*repair='interpolate'"),
        (lambda r: r[:3] + [(r[2][0], "1", "999")] + r[3:], r"x\.csv line 5: duplicate time 2023-01-01T02:00:00\+00:00 with a different value"),
        (lambda r: r[:1] + [("2023-01-01T01:00:00+02:00", "1", "2")] + r[2:], r"x\.csv line 3: timestamp '2023-01-01T01:00:00\+02:00' is not UTC; convert"),
        (lambda r: r[:1] + [("01/13/2023 xx", "1", "2")] + r[2:], r"x\.csv line 3: timestamp '01/13/2023 xx' is not parseable"),
        (lambda r: r[:2] + [(r[2][0], "5", "-4.5")] + r[3:], r"x\.csv line 4: value -4\.5 .* is negative"),
        (lambda r: r[:2] + [(r[2][0], "5", "")] + r[3:], r"x\.csv line 4: value in .* is empty; fill it or pass repair='interpolate'"),
        (lambda r: r[:2] + [(r[2][0], "5", "n/a")] + r[3:], r"x\.csv line 4: value 'n/a' .* is not a number"),
    ],
    ids=["gap", "conflicting-duplicate", "non-utc", "unparseable-time", "negative", "missing-value", "text-value"],
)
def test_bad_csvs_give_one_clear_line(tmp_path, mutate, pattern):
    path = write(tmp_path, mutate(good_rows()))
    with pytest.raises(DataError, match=pattern) as info:
        TraceSignal.from_csv(path)
    assert "\n" not in str(info.value)


def test_identical_duplicates_are_dropped(tmp_path):
    rows = good_rows()
    s = read_electricitymaps_csv(write(tmp_path, rows[:3] + [rows[2]] + rows[3:]))["ES"]
    assert len(s) == 6 and s.tolist() == [110.0, 111.0, 112.0, 113.0, 114.0, 115.0]


def test_repair_interpolates_short_gaps_and_missing_values(tmp_path):
    rows = good_rows(10)
    rows = rows[:2] + rows[5:]  # 3 missing hours (02, 03, 04)
    rows[-1] = (rows[-1][0], "1", "")  # a missing value
    s = read_electricitymaps_csv(write(tmp_path, rows), repair="interpolate")["ES"]
    assert len(s) == 10 and s.iloc[-1] == 118.0 and s.iloc[2:5].tolist() == pytest.approx([112.0, 113.0, 114.0])
    assert not s.isna().any()


def test_repair_refuses_long_gaps(tmp_path):
    rows = good_rows(10)
    with pytest.raises(DataError, match="gap of 4 steps.*at most 3"):
        read_electricitymaps_csv(write(tmp_path, rows[:2] + rows[6:]), repair="interpolate")


def test_negative_values_are_never_repaired(tmp_path):
    rows = good_rows()
    rows[1] = (rows[1][0], "1", "-1")
    with pytest.raises(DataError, match="negative"):
        read_electricitymaps_csv(write(tmp_path, rows), repair="interpolate")


def test_unsorted_rows_are_sorted(tmp_path):
    rows = good_rows()
    s = read_electricitymaps_csv(write(tmp_path, rows[::-1]))["ES"]
    assert s.index.is_monotonic_increasing and s.iloc[0] == 110.0


def test_missing_columns_and_files_are_clear(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("when,value\n2023-01-01,1\n")
    with pytest.raises(DataError, match="no 'Datetime \\(UTC\\)' column"):
        TraceSignal.from_csv(p)
    with pytest.raises(DataError, match="file not found"):
        TraceSignal.from_csv(tmp_path / "missing.csv")


def test_mapping_of_zone_to_paths_and_unknown_zone(tmp_path):
    p = write(tmp_path, good_rows(), zone="ES")
    sig = TraceSignal.from_csv({"SE": p})
    assert sig.zones() == ["SE"]
    with pytest.raises(UnknownZoneError, match="it has SE"):
        sig.history("ES", "2023-01-01T00:00Z", "2023-01-01T02:00Z")


def test_window_outside_the_trace_is_a_clear_error():
    with pytest.raises(DataError, match="covers 2021-01-01"):
        TraceSignal.embedded().history("ES", "2030-01-01T00:00Z", "2030-01-01T02:00Z")


def test_forecast_uses_only_the_past_and_oracle_returns_actuals():
    sig = TraceSignal.embedded()
    start = pd.Timestamp("2023-06-10T00:00Z")
    fc = sig.forecast("ES", start, "24h")
    actual = sig.history("ES", start, start + pd.Timedelta("24h"))
    assert series_meta(fc).forecast_model not in (None, "oracle") and series_meta(fc).issued_at == start
    oracle = sig.forecast("ES", start, "24h", oracle=True)
    assert series_meta(oracle).forecast_model == "oracle" and oracle.tolist() == actual.tolist()
    assert TraceSignal.embedded(oracle=True).forecast("ES", start, "24h").attrs["forecast_model"] == "oracle"
    # changing the future does not change the forecast (no peeking)
    trace = sig.trace("ES").copy()
    trace[trace.index >= start] = 9999.0
    fc2 = TraceSignal({"ES": trace}).forecast("ES", start, "24h")
    assert fc2.tolist() == pytest.approx(fc.tolist())


def test_shift_replays_the_trace_at_other_dates():
    shift = pd.Timestamp("2026-11-28T00:00Z") - pd.Timestamp("2023-06-01T00:00Z")
    sig = TraceSignal.embedded(shift=timedelta(days=shift.days))
    s = sig.history("ES", "2026-11-28T00:00Z", "2026-11-28T03:00Z")
    ref = TraceSignal.embedded().history("ES", "2023-06-01T00:00Z", "2023-06-01T03:00Z")
    assert s.index[0] == pd.Timestamp("2026-11-28T00:00Z") and s.tolist() == ref.tolist()
    fc = sig.forecast("ES", "2026-11-28T00:00Z", "3h", oracle=True)
    assert fc.tolist() == ref.tolist() and fc.index[0] == pd.Timestamp("2026-11-28T00:00Z")


def test_replay_answers_for_any_date_with_weekdays_aligned():
    sig = TraceSignal.embedded(replay=True)
    fc = sig.forecast("SE", "2026-11-28T10:00Z", "6h")
    assert len(fc) == 6 and fc.index[0] == pd.Timestamp("2026-11-28T10:00Z")
    assert "replay(2023)" in series_meta(fc).forecast_model
    with pytest.raises(DataError, match="no history before it"):  # only forward
        sig.forecast("DE", "2020-06-01T00:00Z", "2h")
    # within the trace nothing moves, even when the horizon runs past its end
    inside = sig.forecast("ES", "2023-12-31T20:00Z", "8h")
    assert series_meta(inside).forecast_model == series_meta(TraceSignal.embedded().forecast("ES", "2023-12-31T20:00Z", "8h")).forecast_model
    assert inside.tolist() == TraceSignal.embedded().forecast("ES", "2023-12-31T20:00Z", "8h").tolist()
    with pytest.raises(DataError, match="outside it"):  # history is never made up
        sig.history("DE", "2026-06-01T00:00Z", "2026-06-01T02:00Z")


def test_a_semicolon_file_and_a_file_without_intensity_are_named_for_what_they_are(tmp_path):
    """Review 39b M7: a ';'-separated export was told to 'use an Electricity Maps export'; a file with no
    intensity column got Python's `pass kind='direct'`, which would fail as well."""
    semi = tmp_path / "semi.csv"
    semi.write_text("Datetime (UTC);Country;Zone id;Carbon intensity gCO₂eq/kWh (Life cycle)\n2023-01-01 00:00:00;Spain;ES;120\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"^semi.csv: the file looks ';'-separated .*; save it comma-separated"):
        read_electricitymaps_csv(semi)
    usage = tmp_path / "usage.csv"
    usage.write_text("timestamp,value\n2023-01-01 00:00:00,12.5\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"^usage.csv: no carbon-intensity column \(found \['timestamp', 'value'\]\); this is not an"):
        read_electricitymaps_csv(usage)
    direct = tmp_path / "direct.csv"
    direct.write_text("Datetime (UTC),Zone id,Carbon intensity gCO₂eq/kWh (direct)\n2023-01-01 00:00:00,ES,100\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"only the direct one; ask for direct intensity \(--kind direct, or kind='direct' from Python\)"):
        read_electricitymaps_csv(direct)
    assert float(read_electricitymaps_csv(direct, kind="direct")["ES"].iloc[0]) == 100.0
