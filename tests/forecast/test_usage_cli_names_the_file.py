"""Review 6 #6: every ``care forecast-usage`` row/column error names the CSV, like its empty-file errors do."""

from __future__ import annotations

from pathlib import Path

import pytest

from care_flows.cli import main


@pytest.mark.parametrize(
    "text, args, fragment",
    [
        ("cpu\n" + "1.0\n" * 10 + "x\ny\n", [], "column 'cpu' has 2 non-numeric or missing value(s), first at line 12"),
        ("t,cpu\n" + "".join(f"{300 * i},1\n" for i in range(100)) + "0,1\n", ["--timestamp-column", "t"],
         "timestamp column 't' is not strictly increasing at line 102"),
        ("t,mem\n0,1\n", [], "column 'cpu' not in the CSV"),
        ("t,cpu\n0,1\n", ["--timestamp-column", "when"], "timestamp column 'when' not in the CSV"),
        ("t,cpu\nyesterday,1\n", ["--timestamp-column", "t"], "'yesterday' that is neither ISO 8601"),
    ],
)
def test_row_and_column_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, args: list[str],
                                             fragment: str) -> None:
    csv = tmp_path / "usage_nan.csv"
    csv.write_text(text)
    assert main(["forecast-usage", "--csv", str(csv), "--column", "cpu", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: usage CSV {csv}: ") and fragment in err and err.count("\n") == 1
