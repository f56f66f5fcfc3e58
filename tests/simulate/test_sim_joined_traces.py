"""``care simulate`` joins consecutive carbon CSV files of one region (e.g. the 2022 and 2023
exports) into one trace, as ``care plan --carbon-csv`` does; it refused them as "two carbon traces"."""

import numpy as np
import pandas as pd
import pytest

from care_flows.cli import main
from care_flows.errors import ConfigError, DataError
from care_flows.simulate import simulate
from care_flows.simulate.engine import CarbonTrace, load_trace

IDX = pd.date_range("2023-05-01", periods=24 * 5, freq="h", tz="UTC")
JOBS = "job_id,arrival,duration_h,slack_h\na,2023-05-02T03:00:00Z,1,30\nb,2023-05-03T10:00:00Z,2,20\n"
VALUES = 200 + 60 * np.sin(np.arange(len(IDX)) / 24 * 2 * np.pi) + np.arange(len(IDX)) % 7


def _export(path, idx, values, zone="ES"):
    pd.DataFrame({"Datetime (UTC)": idx.strftime("%Y-%m-%d %H:%M:%S"), "Zone id": zone,
                  "Carbon intensity gCO₂eq/kWh (Life cycle)": values}).to_csv(path, index=False)
    return str(path)


def _halves(tmp_path, cut=60, zone="ES"):
    whole = _export(tmp_path / "whole.csv", IDX, VALUES, zone)
    first = _export(tmp_path / "first.csv", IDX[:cut], VALUES[:cut], zone)
    second = _export(tmp_path / "second.csv", IDX[cut:], VALUES[cut:], zone)
    return whole, first, second


@pytest.mark.parametrize("prefix", ["", "eu-south-2="])
def test_two_consecutive_files_of_one_region_are_one_trace_in_any_order(tmp_path, prefix):
    whole, first, second = _halves(tmp_path)
    expected = load_trace([whole], default_region="eu-south-2")
    for specs in ([prefix + first, prefix + second], [prefix + second, prefix + first]):
        trace = load_trace(specs, default_region="eu-south-2")
        assert trace.regions == expected.regions == ["eu-south-2"]
        np.testing.assert_array_equal(trace.values, expected.values)
        assert trace.index.equals(expected.index)
        out = simulate(JOBS, specs, "care", home_region="eu-south-2").summary()
        assert out == simulate(JOBS, [whole], "care", home_region="eu-south-2").summary()
        assert out["jobs"] == 2


def test_the_cli_joins_them_and_still_names_the_other_regions_file(tmp_path, capsys):
    _, first, second = _halves(tmp_path)
    se = _export(tmp_path / "se.csv", IDX, np.full(len(IDX), 30.0), zone="SE")
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(JOBS)
    assert main(["simulate", "--carbon-csv", second, "--carbon-csv", se, "--carbon-csv", first,
                 "--home-region", "eu-south-2", "--jobs", str(jobs), "--policy", "oracle", "--json"]) == 0
    out, err = capsys.readouterr()
    assert '"eu-north-1": 2' in out and "two carbon traces" not in err
    assert f"carbon CSV {se!r} is zone SE, not the grid of the home region eu-south-2: taken for eu-north-1" in err


def test_overlapping_files_say_they_were_joined(tmp_path, capsys):
    _, first, _ = _halves(tmp_path)
    later = _export(tmp_path / "later.csv", IDX[50:], VALUES[50:])  # overlaps first by 10 hours
    with pytest.raises(DataError) as info:
        load_trace([first, later], default_region="eu-south-2")
    msg = str(info.value)
    # both are exports of the home region's own grid (ES): no hint about another region's trace (review 46d L2; plain
    # files without a Zone id get it, tests/simulate/test_sim_review43a.py)
    assert msg == (f"region eu-south-2 has carbon CSVs {first!r} and {later!r}, joined as one trace in time order: {later!r} "
                   "overlaps another file at 2023-05-03T02:00:00+00:00; give non-overlapping files")
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(JOBS)
    assert main(["simulate", "--carbon-csv", first, "--carbon-csv", later, "--jobs", str(jobs), "--policy", "now"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: region eu-south-2 has carbon CSVs") and "Traceback" not in err


def test_a_gap_between_files_names_the_missing_hours(tmp_path):
    _, first, _ = _halves(tmp_path)
    late = _export(tmp_path / "late.csv", IDX[70:], VALUES[70:])
    with pytest.raises(DataError, match=r"^region eu-south-2 has carbon CSVs .*, joined as one trace in time order: .*the rows 2023-05-03T12:00:00\+00:00 to "
                                        r"2023-05-03T21:00:00\+00:00 are missing; give consecutive exports") as info:
        load_trace([f"eu-south-2={first}", f"eu-south-2={late}"], default_region="eu-south-2")
    assert "REGION=PATH" not in str(info.value)  # both were given with REGION=: no hint about bare paths


def test_files_of_two_zones_for_one_region_are_still_two_traces(tmp_path):
    _, first, _ = _halves(tmp_path)
    fr = _export(tmp_path / "fr.csv", IDX[60:], VALUES[60:], zone="FR")
    with pytest.raises(ConfigError, match=r"^region eu-south-2 has two carbon traces \(.*first.csv' and .*fr.csv'\); give one "
                                          r"--carbon-csv per region$"):
        load_trace([f"eu-south-2={first}", f"eu-south-2={fr}"], default_region="eu-south-2")
    with pytest.raises(ConfigError, match=r"^region eu-south-2 has two carbon traces \(embedded:ES and .*first.csv'\)"):
        load_trace(["embedded:ES", f"eu-south-2={first}"], default_region="eu-south-2")


def test_pieces_given_two_ways_or_of_another_zone_without_a_home_trace_are_one_trace(tmp_path):
    """Review 46d L1: a bare PATH and REGION=PATH of one zone for one region were "two carbon traces", and two
    pieces of another zone with no trace for the home region were "neither is the grid of the home region"."""
    whole, first, second = _halves(tmp_path)
    expected = load_trace([whole], default_region="eu-south-2")
    mixed = load_trace([first, f"eu-south-2={second}"], default_region="eu-south-2")
    np.testing.assert_array_equal(mixed.values, expected.values)
    fr_whole = _export(tmp_path / "fr.csv", IDX, VALUES, zone="FR")
    fr22 = _export(tmp_path / "fr22.csv", IDX[:60], VALUES[:60], zone="FR")
    fr23 = _export(tmp_path / "fr23.csv", IDX[60:], VALUES[60:], zone="FR")
    alone = load_trace([fr_whole], default_region="eu-south-2")
    pieces = load_trace([fr23, fr22], default_region="eu-south-2")
    assert pieces.regions == alone.regions == ["eu-south-2"]  # a lone zone stays the home region's trace, with a note
    np.testing.assert_array_equal(pieces.values, alone.values)
    assert any("is zone FR, but it was given for eu-south-2" in n for n in pieces.notes)


def test_a_bare_piece_of_a_zone_given_for_its_region_joins_it_in_either_order(tmp_path, capsys):
    """Review 46f L2: with no home trace, ``fr23.csv`` first and ``eu-west-3=fr22.csv`` second kept the bare file as
    eu-south-2's trace (the lone-zone rule) and failed with "the carbon traces do not overlap"; the other order ran."""
    fr_whole = _export(tmp_path / "fr.csv", IDX, VALUES, zone="FR")
    fr22 = _export(tmp_path / "fr22.csv", IDX[:60], VALUES[:60], zone="FR")
    fr23 = _export(tmp_path / "fr23.csv", IDX[60:], VALUES[60:], zone="FR")
    whole = load_trace([f"eu-west-3={fr_whole}"], default_region="eu-west-3")
    for specs in ([fr23, f"eu-west-3={fr22}"], [f"eu-west-3={fr22}", fr23]):
        default = "eu-west-3" if specs[0].startswith("eu-west-3=") else "eu-south-2"
        trace = load_trace(specs, default_region=default)
        assert trace.regions == ["eu-west-3"]
        np.testing.assert_array_equal(trace.values, whole.values)
        assert simulate(JOBS, specs, "oracle").summary() == simulate(JOBS, [f"eu-west-3={fr_whole}"], "oracle").summary()
    joined = load_trace([fr23, f"eu-west-3={fr22}"], default_region="eu-south-2")
    assert any(f"carbon CSV {fr23!r} is zone FR, not the grid of the home region eu-south-2: taken for eu-west-3 "
               "(joined to the trace given for it)" in n for n in joined.notes)
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(JOBS)
    assert main(["simulate", "--carbon-csv", fr23, "--carbon-csv", f"eu-west-3={fr22}", "--jobs", str(jobs), "--json"]) == 0
    assert '"jobs": 2' in capsys.readouterr().out


def test_the_home_region_and_the_other_files_do_not_depend_on_the_flag_order(tmp_path, capsys):
    """Review 47a M1/M2: with ``fr23.csv eu-west-3=fr22.csv se.csv`` the first fix joined the FR pieces but kept
    eu-south-2 as the default home, so se.csv became eu-south-2's trace and the baseline (0 % saved), while
    ``eu-west-3=fr22.csv`` first made eu-west-3 home and se.csv eu-north-1's (87 %); the notes named eu-south-2."""
    fr22 = _export(tmp_path / "fr22.csv", IDX[:60], VALUES[:60], zone="FR")
    fr23 = _export(tmp_path / "fr23.csv", IDX[60:], VALUES[60:], zone="FR")
    se = _export(tmp_path / "se.csv", IDX, np.full(len(IDX), 30.0), zone="SE")
    outs = []
    for specs in ([fr23, f"eu-west-3={fr22}", se], [f"eu-west-3={fr22}", fr23, se], [f"eu-west-3={fr22}", se, fr23]):
        out = simulate(JOBS, specs, "oracle")
        outs.append(out.summary())
        assert out.summary()["jobs_per_region"] == {"eu-west-3": 0, "eu-north-1": 2}  # home is eu-west-3 in every order
        assert not any("eu-south-2" in n for n in out.notes), out.notes
    assert outs[0] == outs[1] == outs[2] and outs[0]["savings_pct"] > 50


def test_traces_that_do_not_overlap_are_named_with_their_files_and_spans(tmp_path, capsys):
    """Review 47d L4: two consecutive plain ``time,g_per_kwh`` files (no Zone id) with the bare one first: it is taken
    for the default home region, and the error said only "the carbon traces do not overlap in time", naming no file,
    no region and no span."""
    nz22, nz23 = tmp_path / "nz22.csv", tmp_path / "nz23.csv"
    for path, part in ((nz22, slice(None, 60)), (nz23, slice(60, None))):
        pd.DataFrame({"time": IDX[part].strftime("%Y-%m-%dT%H:%M:%SZ"), "g_per_kwh": VALUES[part]}).to_csv(path, index=False)
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(JOBS)
    code = main(["simulate", "--carbon-csv", str(nz23), "--carbon-csv", f"eu-west-3={nz22}", "--jobs", str(jobs)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert (f"the carbon traces do not overlap in time (eu-south-2: {str(nz23)!r} 2023-05-03T12:00:00+00:00 to 2023-05-05T23:00:00+00:00; "
            f"eu-west-3: {str(nz22)!r} 2023-05-01T00:00:00+00:00 to 2023-05-03T11:00:00+00:00); give traces that cover the same period; "
            f"{str(nz23)!r} has no REGION=, so it is taken for the home region eu-south-2: write REGION=PATH if it is another region's trace") in err
    with pytest.raises(DataError, match=r"do not overlap in time \(eu-south-2 2023-05-03T12:00:00\+00:00 to .*; eu-west-3 2023-05-01"):
        CarbonTrace.from_series({"eu-south-2": pd.Series(VALUES[60:], index=IDX[60:]), "eu-west-3": pd.Series(VALUES[:60], index=IDX[:60])})


def test_the_bare_path_hint_is_given_only_when_the_home_trace_is_the_one_that_misses(tmp_path):
    """Review 48b L2: with a bare home file that overlaps eu-north-1, and eu-west-3's file the odd one out, the error
    blamed the home file; a joined trace is named by all its files."""
    def plain(name, part):
        pd.DataFrame({"time": IDX[part].strftime("%Y-%m-%dT%H:%M:%SZ"), "g_per_kwh": VALUES[part]}).to_csv(tmp_path / name, index=False)
        return str(tmp_path / name)

    home, se1, se2, fr = plain("es.csv", slice(60, None)), plain("se1.csv", slice(60, 90)), plain("se2.csv", slice(90, None)), plain("fr.csv", slice(None, 60))
    with pytest.raises(DataError) as caught:
        load_trace([home, f"eu-north-1={se1}", f"eu-north-1={se2}", f"eu-west-3={fr}"], default_region="eu-south-2")
    message = str(caught.value)
    assert f"eu-north-1: {se1!r} + {se2!r} 2023-05-03T12:00:00+00:00 to 2023-05-05T23:00:00+00:00" in message
    assert "has no REGION=" not in message
