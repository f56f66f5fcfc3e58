"""Inter-region RTT: the embedded measured table covers every registry pair; the estimate is only a fallback."""

import pytest

from care_flows import latency
from care_flows.errors import UnknownRegionError
from care_flows.regions import known_regions


def test_the_measured_table_covers_every_registry_pair_symmetrically() -> None:
    table = latency.measured_table()
    regions = known_regions()
    for a in regions:
        for b in regions:
            assert (a, b) in table and table[(a, b)] == table[(b, a)]
            assert latency.latency_source(a, b).startswith("measured: CloudPing.co")
    assert all(1.0 < table[(r, r)] < 6.0 for r in regions)  # in-region RTT
    assert latency.rtt_ms("eu-south-2", "eu-north-1") == 54.7 and latency.rtt_ms("us-east-1", "us-east-2") == 15.4
    assert latency.rtt_ms("eu-south-2", "ap-southeast-2") > 250  # the far side of the world


def test_overrides_and_the_estimate_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    assert latency.rtt_ms("eu-south-2", "eu-north-1", table={("eu-north-1", "eu-south-2"): 48.0}) == 48.0
    monkeypatch.setattr(latency, "measured_table", lambda: {})
    assert latency.rtt_ms("eu-south-2", "eu-north-1") == pytest.approx(latency.estimated_rtt_ms("eu-south-2", "eu-north-1"))
    assert latency.latency_source("eu-south-2", "eu-north-1").startswith("estimate:")
    with pytest.raises(UnknownRegionError):
        latency.rtt_ms("eu-moon-1", "eu-north-1")
