"""Rebuild the data files embedded in ``care_flows/data`` from ``../shared/data``.

Run from the repository root::

    .venv/bin/python scripts/build_embedded_data.py [--shared ../shared/data]

The outputs are small gzip-compressed CSVs read at run time with
``importlib.resources`` (see ``care_flows/data/__init__.py``). Sources and
licences are listed in ``care_flows/data/README.md``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "care_flows" / "data"
ZONES = ["ES", "SE", "DE", "FR", "GB"]
YEARS = [2021, 2022, 2023]


def build_carbon(shared: Path) -> None:
    frames = []
    for zone in ZONES:
        for year in YEARS:
            df = pd.read_csv(shared / "carbon_intensity" / f"electricitymaps_{zone}_{year}_hourly.csv")
            frames.append(
                pd.DataFrame(
                    {
                        "time": pd.to_datetime(df["Datetime (UTC)"], utc=True),
                        "zone": zone,
                        "zone_id": df["Zone id"],
                        "lifecycle_g_per_kwh": df["Carbon intensity gCO₂eq/kWh (Life cycle)"],
                        "direct_g_per_kwh": df["Carbon intensity gCO₂eq/kWh (direct)"],
                        "estimated": df["Data estimated"].astype(str).str.lower().eq("true"),
                    }
                )
            )
    out = pd.concat(frames, ignore_index=True)
    out["time"] = out["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.to_csv(OUT / "carbon_intensity_hourly.csv.gz", index=False, compression={"method": "gzip", "mtime": 0})
    print("carbon rows", len(out))


def build_prices(shared: Path) -> None:
    lib = pd.read_csv(shared / "cloud_pricing" / "aws_ec2_ondemand_linux_libcloud_2025-03.csv")
    lib = lib[lib["suspect_price"].astype(str).str.lower() == "false"]
    lib = lib[lib["region"] != "us-east-1"]  # the karpenter table is the reliable us-east-1 source
    lib = lib.assign(source="libcloud-2025-03")
    kar = pd.read_csv(shared / "cloud_pricing" / "aws_ec2_ondemand_linux_us-east-1_karpenter_2026-07.csv")
    kar = kar.assign(source="karpenter-2026-07")
    cols = ["region", "instance_type", "price_usd_per_hour", "vcpu", "memory_gib", "source"]
    prices = pd.concat([lib[cols], kar[cols]], ignore_index=True)
    prices = prices.rename(columns={"price_usd_per_hour": "usd_per_hour"})
    specs = pd.read_csv(shared / "cloud_pricing" / "aws_ec2_instance_specs_libcloud.csv")
    arch = specs.set_index("instance_type")["physical_processor"].fillna("")
    gpu = specs.set_index("instance_type")["gpu_memory"]
    prices = prices[prices["usd_per_hour"] > 0]
    prices = pd.concat([prices, _derive_missing_sizes(prices, kar)], ignore_index=True)
    prices["architecture"] = [_architecture(t, str(arch.get(t, ""))) for t in prices["instance_type"]]
    prices["gpu"] = [pd.notna(gpu.get(t)) and str(gpu.get(t)) not in ("NA", "nan", "") for t in prices["instance_type"]]
    prices = prices.sort_values(["region", "instance_type"])
    prices.to_csv(OUT / "ec2_prices_ondemand_linux.csv.gz", index=False, compression={"method": "gzip", "mtime": 0})
    print("price rows", len(prices), prices["region"].nunique(), "regions")


def _derive_missing_sizes(prices: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Price sizes a region's trustworthy table lacks from a sibling size of the same family.

    AWS prices sizes of a family in the same ratio in every region, so with the reliable
    us-east-1 table as reference: usd(R, T) = usd(us-east-1, T) * usd(R, S) / usd(us-east-1, S),
    with S the trustworthy sibling closest in vCPU. Derived rows are labelled
    ``derived-from-<S>`` in ``source`` (e.g. eu-north-1 t3.medium, missing from the libcloud table).
    """
    ref = reference.set_index("instance_type")
    ref_family = ref.index.str.split(".").str[0]
    rows = []
    for region, table in prices.groupby("region"):
        if region == "us-east-1":
            continue
        have = table.set_index("instance_type")
        families = set(have.index.str.split(".").str[0])
        for family in families:
            siblings = have[have.index.str.split(".").str[0] == family]
            siblings = siblings[siblings.index.isin(ref.index)].dropna(subset=["vcpu"])
            if siblings.empty:
                continue
            for itype in ref.index[ref_family == family]:
                if itype in have.index:
                    continue
                vcpu = ref.at[itype, "vcpu"]
                if pd.isna(vcpu):
                    continue
                sib = (siblings["vcpu"] - vcpu).abs().idxmin()
                usd = ref.at[itype, "price_usd_per_hour"] * siblings.at[sib, "usd_per_hour"] / ref.at[sib, "price_usd_per_hour"]
                rows.append({"region": region, "instance_type": itype, "usd_per_hour": round(float(usd), 6),
                             "vcpu": vcpu, "memory_gib": ref.at[itype, "memory_gib"], "source": f"derived-from-{sib}"})
    return pd.DataFrame(rows)


def _architecture(instance_type: str, processor: str) -> str:
    """arm64 for Graviton types (by the spec table, else by the family name, e.g. m6g, c7gn)."""
    family = instance_type.split(".")[0]
    suffix = re.sub(r"^[a-z]+\d+", "", family)
    if "graviton" in processor.lower() or "g" in suffix:
        return "arm64"
    return "x86_64"


def _num(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series.astype(str).str.replace(",", ".", regex=False).replace({"N/A": None}), errors="coerce")


def build_power(shared: Path) -> None:
    df = pd.read_csv(shared / "power_models" / "ccf_teads_aws_instances_power.csv")
    out = pd.DataFrame(
        {
            "instance_type": df["Instance type"],
            "vcpu": _num(df["Instance vCPU"]),
            "memory_gib": _num(df["Instance Memory (in GB)"]),
            "platform_cpu": df["Platform CPU Name"],
            "watts_idle": _num(df["Instance @ Idle"]),
            "watts_10": _num(df["Instance @ 10%"]),
            "watts_50": _num(df["Instance @ 50%"]),
            "watts_100": _num(df["Instance @ 100%"]),
        }
    ).dropna(subset=["watts_idle", "watts_100"])
    out.to_csv(OUT / "ec2_instance_power_teads.csv.gz", index=False, compression={"method": "gzip", "mtime": 0})
    emb = pd.read_csv(shared / "power_models" / "ccf_coefficients_aws_embodied.csv")
    emb = emb.rename(columns={"type": "instance_type", "total": "embodied_kg_co2eq"})[["instance_type", "embodied_kg_co2eq"]]
    emb.to_csv(OUT / "ec2_embodied_ccf.csv", index=False)
    use = pd.read_csv(shared / "power_models" / "ccf_coefficients_aws_use.csv")
    use = use.rename(columns={"Architecture": "architecture", "Min Watts": "min_watts_per_vcpu", "Max Watts": "max_watts_per_vcpu"})
    use[["architecture", "min_watts_per_vcpu", "max_watts_per_vcpu"]].to_csv(OUT / "ccf_aws_use_coefficients.csv", index=False)
    print("power rows", len(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    build_carbon(args.shared)
    build_prices(args.shared)
    build_power(args.shared)


if __name__ == "__main__":
    main()
