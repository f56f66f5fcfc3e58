"""AwsPriceList: Price List responses replayed through botocore's Stubber, disk cache, fallback, spot."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import NoCredentialsError
from botocore.stub import Stubber

from care_flows.aws.clients import AwsClients
from care_flows.aws.pricing import AwsPriceList, parse_price_list, price_list_filters
from care_flows.pricing import EmbeddedPrices, PriceSource
from test_aws_support import aws, moto_url, shared_session  # noqa: F401

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pricing"
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


def _page(region: str, n: int) -> dict[str, Any]:
    return json.loads((FIXTURES / f"get_products_{region}_page{n}.json").read_text())


def _stubbed(pages: dict[str, list[dict[str, Any]]] | None = None, error: str | None = None) -> tuple[AwsClients, list[Stubber]]:
    stubbers: list[Stubber] = []

    def wrap(service: str, region: str, client: Any) -> Any:
        if service != "pricing":
            return client
        stub = Stubber(client)
        if error:
            stub.add_client_error("get_products", service_error_code=error, http_status_code=400)
        for reg, responses in (pages or {}).items():
            for i, body in enumerate(responses):
                expected = {"ServiceCode": "AmazonEC2", "Filters": price_list_filters(reg), "FormatVersion": "aws_v1"}
                if i:
                    expected["NextToken"] = responses[i - 1]["NextToken"]
                stub.add_response("get_products", body, expected)
        stub.activate()
        stubbers.append(stub)
        return client

    return AwsClients(shared_session, wrap=wrap), stubbers


def test_recorded_pages_parse_into_the_catalog(tmp_path: Path) -> None:
    clients, stubs = _stubbed({"eu-north-1": [_page("eu-north-1", 1), _page("eu-north-1", 2)]})
    prices = AwsPriceList(clients, cache_dir=tmp_path, now=lambda: NOW)
    assert isinstance(prices, PriceSource)
    cat = prices.catalog("eu-north-1")
    stubs[0].assert_no_pending_responses()
    assert prices.served_by["eu-north-1"] == "aws-price-list"
    assert sorted(cat["instance_type"]) == ["c5.large", "g5.xlarge", "m5.large", "m7g.large", "t3.large", "t3.micro", "t4g.large"]
    rows = cat.set_index("instance_type")
    assert rows.loc["t4g.large", "architecture"] == "arm64" and rows.loc["t3.large", "architecture"] == "x86_64"
    assert bool(rows.loc["g5.xlarge", "gpu"]) and not bool(rows.loc["t3.large", "gpu"])
    assert rows.loc["t3.large", "vcpu"] == 2 and rows.loc["t3.large", "memory_gib"] == 8
    assert prices.usd_per_hour("eu-north-1", "t3.large") == pytest.approx(0.0864)
    # the RHEL (RunInstances:0010) entry and the Reserved term are ignored: m5.large has its on-demand price
    assert prices.usd_per_hour("eu-north-1", "m5.large") == pytest.approx(EmbeddedPrices().usd_per_hour("eu-north-1", "m5.large"))
    assert list(cat["usd_per_hour"]) == sorted(cat["usd_per_hour"])


def test_disk_cache_serves_until_ttl_then_refreshes(tmp_path: Path) -> None:
    clients, _ = _stubbed({"eu-south-2": [_page("eu-south-2", 1)]})
    AwsPriceList(clients, cache_dir=tmp_path, now=lambda: NOW).catalog("eu-south-2")
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["eu-south-2.json"]  # atomic write left no temp file
    # a second process, API down: the cache serves
    down, _ = _stubbed(error="ThrottlingException")
    cached = AwsPriceList(down, cache_dir=tmp_path, now=lambda: NOW + timedelta(days=1))
    assert cached.usd_per_hour("eu-south-2", "t3.large") == pytest.approx(0.0912)
    assert cached.served_by["eu-south-2"] == "cache"
    # past the TTL with the API up again: refetched
    again, stubs = _stubbed({"eu-south-2": [_page("eu-south-2", 1)]})
    fresh = AwsPriceList(again, cache_dir=tmp_path, now=lambda: NOW + timedelta(days=8))
    fresh.catalog("eu-south-2")
    assert fresh.served_by["eu-south-2"] == "aws-price-list"
    stubs[0].assert_no_pending_responses()


@pytest.mark.parametrize("failure", ["ThrottlingException", "AccessDeniedException", "no-credentials", "empty", "garbage"])
def test_any_failure_falls_back_to_the_embedded_snapshot(tmp_path: Path, failure: str) -> None:
    if failure == "no-credentials":
        def wrap(service, region, client):
            class NoCreds:
                def get_paginator(self, name):
                    raise NoCredentialsError()
            return NoCreds() if service == "pricing" else client
        clients = AwsClients(shared_session, wrap=wrap)
    elif failure == "empty":
        clients, _ = _stubbed({"eu-north-1": [{"FormatVersion": "aws_v1", "PriceList": []}]})
    elif failure == "garbage":
        clients, _ = _stubbed({"eu-north-1": [{"FormatVersion": "aws_v1", "PriceList": ["{not json"]}]})
    else:
        clients, _ = _stubbed(error=failure)
    prices = AwsPriceList(clients, cache_dir=tmp_path, now=lambda: NOW)
    assert prices.usd_per_hour("eu-north-1", "t3.large") == EmbeddedPrices().usd_per_hour("eu-north-1", "t3.large")
    assert prices.served_by["eu-north-1"].startswith("embedded (")
    assert not (tmp_path / "eu-north-1.json").exists()  # a fallback answer is never cached


def test_parse_skips_non_hourly_and_zero_prices() -> None:
    doc = json.loads(_page("eu-south-2", 1)["PriceList"][0])
    zero = json.loads(json.dumps(doc))
    for term in zero["terms"]["OnDemand"].values():
        for dim in term["priceDimensions"].values():
            dim["pricePerUnit"]["USD"] = "0.0000000000"
    assert parse_price_list([zero]).empty


def test_spot_price_option_against_moto(aws: AwsClients) -> None:
    prices = AwsPriceList(aws, cache_dir="/nonexistent", now=lambda: datetime.now(timezone.utc))
    usd = prices.spot_usd_per_hour("eu-north-1", "t3.large")
    assert usd > 0


def test_the_price_cache_lives_in_the_one_care_cache_folder(tmp_path, monkeypatch) -> None:
    from care_flows.aws.pricing import default_cache_dir
    from care_flows.signals.cache import default_cache_dir as signal_cache_dir

    monkeypatch.delenv("CARE_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "care" / "aws-price-list" == signal_cache_dir() / "aws-price-list"
    monkeypatch.setenv("CARE_CACHE_DIR", "~/shared-cache")
    assert default_cache_dir() == tmp_path / "shared-cache" / "aws-price-list"
