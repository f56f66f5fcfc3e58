"""Review 47c L1, L3, L4: a score from one forecast origin said nothing about it; a tab-separated file got
"column not in the CSV"; naive local times going back an hour at a daylight-saving change got the advice
to sort and drop duplicates, which would interleave two hours and delete one."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from care_flows.cli import main

DAY = 288


def _daily(n: int) -> pd.DataFrame:
    t = pd.date_range("2024-01-01", periods=n, freq="5min", tz="UTC")
    cpu = 50 + 20 * np.sin(2 * np.pi * np.arange(n) / DAY)
    return pd.DataFrame({"time": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "cpu": cpu})


def test_a_score_from_less_than_a_day_of_origins_says_so(tmp_path, capsys):
    short, enough = tmp_path / "short.csv", tmp_path / "enough.csv"
    _daily(DAY + 1).to_csv(short, index=False)
    _daily(5 * DAY).to_csv(enough, index=False)
    assert main(["forecast-usage", "--csv", str(short), "--column", "cpu", "--timestamp-column", "time", "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert "the score rests on 1 forecast origin(s)" in err
    assert any("the score rests on 1 forecast origin(s)" in w for w in doc["warnings"])
    assert main(["forecast-usage", "--csv", str(enough), "--column", "cpu", "--timestamp-column", "time"]) == 0
    assert "the score rests on" not in capsys.readouterr().err


def test_a_tab_separated_file_is_named_as_such(tmp_path, capsys):
    tab = tmp_path / "tab.tsv"
    _daily(3 * DAY).to_csv(tab, index=False, sep="\t")
    assert main(["forecast-usage", "--csv", str(tab), "--column", "cpu", "--timestamp-column", "time"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the file looks tab-separated (one header field 'time\\tcpu')" in err


def test_local_times_going_back_an_hour_get_the_utc_offset_advice(tmp_path, capsys):
    t = pd.date_range("2024-10-26 12:00", "2024-10-27 12:00", freq="5min", tz="Europe/Madrid", inclusive="left")
    frame = pd.DataFrame({"time": t.strftime("%Y-%m-%d %H:%M:%S"), "cpu": np.arange(len(t), dtype=float)})  # the offset dropped
    frame.to_csv(tmp_path / "local.csv", index=False)
    assert main(["forecast-usage", "--csv", str(tmp_path / "local.csv"), "--column", "cpu", "--timestamp-column", "time"]) == 2
    err = capsys.readouterr().err
    assert "('2024-10-27 02:00:00' is not after" in err and "with their UTC offset or in UTC" in err
    frame.iloc[[5, 4]] = frame.iloc[[4, 5]].to_numpy()  # two rows swapped: 5 minutes back, no daylight-saving advice
    frame.to_csv(tmp_path / "swapped.csv", index=False)
    assert main(["forecast-usage", "--csv", str(tmp_path / "swapped.csv"), "--column", "cpu", "--timestamp-column", "time"]) == 2
    err = capsys.readouterr().err
    assert err.rstrip().endswith("sort the rows and drop duplicates") and "daylight" not in err
