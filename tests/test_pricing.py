"""EmbeddedPrices: the study's prices, catalogue shape, errors that list options."""

import pandas as pd
import pytest

from care_flows.errors import ConfigError, UnknownRegionError
from care_flows.pricing import CATALOG_COLUMNS, EmbeddedPrices, PriceSource, instance_family


def test_study_prices():
    p = EmbeddedPrices()
    assert p.usd_per_hour("eu-south-2", "t3.large") == 0.0912
    assert p.usd_per_hour("eu-north-1", "t3.large") == 0.0864
    assert p.usd_per_hour("eu-south-2", "t3.medium") == 0.0456
    assert p.usd_per_hour("eu-north-1", "t3.medium") == 0.0432


def test_catalog_shape_and_protocol():
    p = EmbeddedPrices()
    assert isinstance(p, PriceSource)
    cat = p.catalog("eu-north-1")
    assert list(cat.columns) == CATALOG_COLUMNS
    assert cat["usd_per_hour"].is_monotonic_increasing
    assert cat["gpu"].dtype == bool and set(cat["architecture"]) <= {"x86_64", "arm64"}


def test_unknown_type_and_region():
    p = EmbeddedPrices()
    with pytest.raises(ConfigError, match="t3.larg.*close matches: .*t3.large"):
        p.usd_per_hour("eu-north-1", "t3.larg")
    with pytest.raises(UnknownRegionError, match="known regions"):
        p.catalog("mars-1")
    with pytest.raises(UnknownRegionError, match="priced regions: .*eu-north-1"):
        p.catalog("ap-south-1")  # in the registry, not in the embedded price table


def test_injected_table():
    t = pd.DataFrame({"region": ["eu-north-1"], "instance_type": ["x1.tiny"], "usd_per_hour": [0.01], "vcpu": [1],
                      "memory_gib": [1.0], "architecture": ["x86_64"], "gpu": [False]})
    assert EmbeddedPrices(t).usd_per_hour("eu-north-1", "x1.tiny") == 0.01
    assert instance_family("m6i.2xlarge") == "m6i"
