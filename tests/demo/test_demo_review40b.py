"""Review 40b L1: `care demo --api-url 'http://127.0.0.1:9/api?token=...'` printed the token twice
("Using the Prefect API at ...", "cannot reach ..."); an API base URL has no query."""

from __future__ import annotations

import pytest

from care_flows.cli import main


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/api?token=sekritPW", "http://127.0.0.1:9/api#sekritPW"])
def test_a_query_or_fragment_in_the_api_url_is_refused_without_echoing_it(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--api-url", url]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "has a query or fragment; give the API's base URL" in err
    assert "sekritPW" not in err and "--api-url http://127.0.0.1:9/api" + url[len("http://127.0.0.1:9/api")] + "... has" in err
