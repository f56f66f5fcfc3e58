"""Right-sizing: cheapest fitting type, headroom, families, architecture, GPU, errors."""

import pandas as pd
import pytest

from care_flows.errors import PlanningError
from care_flows.planning.sizing import UsageSummary, fitting_types, right_size
from care_flows.pricing import EmbeddedPrices


def _prices(*extra_rows):
    rows = [
        # type, vcpu, mem, usd, arch, gpu
        ("t3.large", 2, 8, 0.0864, "x86_64", False),
        ("t3.xlarge", 4, 16, 0.1728, "x86_64", False),
        ("m5.large", 2, 8, 0.102, "x86_64", False),
        ("m5.xlarge", 4, 16, 0.204, "x86_64", False),
        ("c5.xlarge", 4, 8, 0.172, "x86_64", False),
        ("c5a.xlarge", 4, 8, 0.172, "x86_64", False),
        ("m6g.large", 2, 8, 0.08, "arm64", False),
        ("g4dn.xlarge", 4, 16, 0.05, "x86_64", True),  # absurdly cheap GPU: must still be excluded
        ("m5.8xlarge", 32, 128, 1.6, "x86_64", False),
        *extra_rows,
    ]
    df = pd.DataFrame(rows, columns=["instance_type", "vcpu", "memory_gib", "usd_per_hour", "architecture", "gpu"])
    df.insert(0, "region", "eu-north-1")
    return EmbeddedPrices(df)


def test_cheapest_fitting_with_headroom():
    p = _prices()
    c = right_size("eu-north-1", 1.5, 6, prices=p)  # 1.8 vCPU, 7.2 GiB -> 2 vCPU / 8 GiB types
    assert c.instance_type == "t3.large" and c.waste_vcpu == 0.5 and c.waste_memory_gib == 2.0
    c = right_size("eu-north-1", 2, 6, prices=p)  # 2.4 vCPU needed -> 4 vCPU; tie at 0.172 -> smaller memory, then name
    assert c.instance_type == "c5.xlarge"
    assert right_size("eu-north-1", 2, 6, prices=p, headroom_pct=0).instance_type == "t3.large"


def test_cheapest_not_smallest_fitting():
    # a 4 vCPU type priced below every 2 vCPU type: 1.8 vCPU / 7.2 GiB needed -> it, not t3.large
    p = _prices(("c6a.xlarge", 4, 8, 0.085, "x86_64", False))
    c = right_size("eu-north-1", 1.5, 6, prices=p)
    assert (c.instance_type, c.vcpu, c.usd_per_hour) == ("c6a.xlarge", 4, 0.085)
    assert c.waste_vcpu == 2.5 and c.waste_memory_gib == 2.0
    fits = fitting_types(p.catalog("eu-north-1"), 1.5, 6)
    assert list(fits["instance_type"])[:3] == ["c6a.xlarge", "t3.large", "m5.large"]


def test_families_architecture_burstable_gpu():
    p = _prices()
    assert right_size("eu-north-1", 1.5, 6, prices=p, families=["m5"]).instance_type == "m5.large"
    assert right_size("eu-north-1", 1.5, 6, prices=p, exclude_families=["t3"]).instance_type == "m5.large"
    assert right_size("eu-north-1", 1.5, 6, prices=p, allow_burstable=False).instance_type == "m5.large"
    assert right_size("eu-north-1", 1.5, 6, prices=p, architecture="arm64").instance_type == "m6g.large"
    assert right_size("eu-north-1", 1.5, 6, prices=p, architecture=None).instance_type == "m6g.large"
    fits = fitting_types(p.catalog("eu-north-1"), 3, 12)
    assert "g4dn.xlarge" not in set(fits["instance_type"])
    assert right_size("eu-north-1", 3, 12, prices=p, allow_gpu=True).instance_type == "g4dn.xlarge"


def test_nothing_fits_names_need_and_largest():
    with pytest.raises(PlanningError, match=r"fits 64 vCPU and 256 GiB.*largest allowed: m5.8xlarge \(32 vCPU, 128 GiB\)"):
        right_size("eu-north-1", 64, 256, prices=_prices())


def test_usage_summary_and_real_catalog():
    u = UsageSummary(peak_vcpu=1.5, peak_memory_gib=6, mean_vcpu=0.5)
    c = right_size("eu-north-1", prices=_prices(), usage=u)
    assert c.instance_type == "t3.large" and c.expected_utilisation == pytest.approx(0.25)
    c2 = right_size("eu-north-1", prices=_prices(), usage={"peak_vcpu": 1.5, "peak_memory_gib": 6})
    assert c2.instance_type == "t3.large"
    real = right_size("eu-south-2", 1.5, 6, prices=EmbeddedPrices(), families=["t3", "m5"])
    assert (real.instance_type, real.usd_per_hour) == ("t3.large", 0.0912)
