"""Prefect's block standard test suite over every CaRE block (as prefect-aws does).

The logo check opens the logo URL; tests may not leave 127.0.0.1, so that one URL is served
from the repository's copy (blocks/care-logo.png) and the image checks run on its bytes.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from prefect.testing.standard_test_suites import blocks as suite_module

from care_flows.blocks import BLOCK_TYPES

LOGO = Path(__file__).resolve().parents[1] / "blocks" / "care-logo.png"


@pytest.fixture(autouse=True)
def _logo_from_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    real = suite_module.urlopen

    def local_logo(url, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(url).endswith("/blocks/care-logo.png"):
            return io.BytesIO(LOGO.read_bytes())
        return real(url, *args, **kwargs)

    monkeypatch.setattr(suite_module, "urlopen", local_logo)


@pytest.mark.parametrize("block", BLOCK_TYPES, ids=lambda b: b.__name__)
class TestAllBlocksAdhereToStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self, block: type[Block]) -> type[Block]:
        return block


def test_secrets_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    from care_flows.blocks import ElectricityMapsCredentials, WattTimeCredentials

    em = ElectricityMapsCredentials(api_token="em-s3cret")
    wt = WattTimeCredentials(username="me", password="wt-s3cret")
    for text in (repr(em), str(em), em.model_dump_json(), repr(wt), wt.model_dump_json(), repr(em.signal_settings())):
        assert "s3cret" not in text
    assert em.signal_settings()["api_token"].get_secret_value() == "em-s3cret"  # handed over, still wrapped
