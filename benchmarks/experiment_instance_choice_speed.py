"""Experiment: how long one ``decide`` call takes with ``instance_choice: priorities`` against the
default ``cheapest`` (docs/CONCEPTS.md, "Right-sizing: on what").

Run: ``.venv/bin/python benchmarks/experiment_instance_choice_speed.py`` (about 15 s; ``--quick``: one
need, one region count). Embedded forecasts issued at 2023-06-01 08:00 UTC, a 1 h job due within
24 h, home eu-north-1 plus 2 or 4 more European regions; each figure is the median of 7 calls after
one warm-up call. ``priorities`` walks every fitting type of each region (its power at the job's
utilisation) to find the price/power front, which the default never does. Sizing is memoised per
price source and need, so "first" times a call on a fresh price source (its need not yet sized: what
a new flow's first plan costs) and "again" a repeat call for the same need (a controller re-planning).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402
from _args import parse  # noqa: E402

from care_flows import get_signal  # noqa: E402
from care_flows.planning.decide import decide  # noqa: E402
from care_flows.policy import CarePolicy  # noqa: E402
from care_flows.pricing import EmbeddedPrices  # noqa: E402

REGIONS = ["eu-north-1", "eu-south-2", "eu-west-3", "eu-central-1", "eu-west-2"]


def main() -> None:
    args = parse(__doc__)
    sig, now = get_signal("embedded"), pd.Timestamp("2023-06-01T08:00Z")
    needs = [(2.0, 8.0)] if args.quick else [(2.0, 8.0), (0.5, 1.0), (16.0, 64.0)]
    counts = (3,) if args.quick else (3, 5)
    print("| need (vCPU / GiB) | regions | cheapest ms, first / again | priorities ms, first / again | chosen (priorities) |")
    print("|---|---|---|---|---|")
    for vcpu, memory_gib in needs:
        for n in counts:
            ms, chosen = {}, ""
            for choice in ("cheapest", "priorities"):
                pol = CarePolicy(home_region=REGIONS[0], regions=REGIONS[1:n], vcpu=vcpu, memory_gib=memory_gib,
                                 deadline_within="24h", expected_duration="1h", instance_choice=choice)
                fc = {r: sig.forecast(r, now, pd.Timedelta("24h")) for r in pol.candidate_regions}
                decide(pol, fc, now)  # warm-up: catalogue and power table loaded
                for when in ("first", "again"):
                    times = []
                    for _ in range(7):
                        prices = EmbeddedPrices() if when == "first" else None  # a fresh source has an empty memo
                        t = time.perf_counter()
                        d = decide(pol, fc, now, prices=prices)
                        times.append(time.perf_counter() - t)
                    ms[choice, when] = 1000 * statistics.median(times)
                chosen = f"{d.chosen.region} {d.chosen.instance_type}"
            print(f"| {vcpu:g} / {memory_gib:g} | {n} | {ms['cheapest', 'first']:.1f} / {ms['cheapest', 'again']:.1f} | "
                  f"{ms['priorities', 'first']:.1f} / {ms['priorities', 'again']:.1f} | {chosen} |")


if __name__ == "__main__":
    main()
