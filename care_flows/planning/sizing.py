"""Right-sizing: the cheapest instance type of a region that fits the need plus headroom.

Pure pandas over a price catalogue (a :class:`care_flows.pricing.PriceSource` is injected).
The need is a resource request (vCPU, memory GiB) or a usage-forecast summary
(:class:`UsageSummary`: peak and mean vCPU and memory); the type must offer at least
``need x (1 + headroom_pct/100)`` of both. Among the fitting types the cheapest wins; ties go to
the smaller capacity (vCPU, then memory), then the name. GPU types are excluded unless
``allow_gpu``; ``families`` allow-lists and ``exclude_families`` deny-lists families (``t3``,
``m6i``...); ``architecture`` is ``x86_64``, ``arm64`` or ``None`` (both); burstable families
(t2, t3, t3a, t4g) can be excluded with ``allow_burstable=False``.

When the job's mean CPU is known (a usage summary's mean vCPU; or ``utilisation``, the mean as a
fraction of the needed vCPU, e.g. the policy's ``cpu_utilisation``: mean = utilisation x vcpu),
each type runs at ``min(1, mean / its vCPU)`` and the ranking price is the list price plus the
CPU-credit surcharge a burstable type costs above its baseline at that utilisation
(:func:`care_flows.pricing.cpu_credit_usd_per_hour`): a t3 kept busy above its baseline is not
cheaper than an m7i-flex. ``usd_per_hour`` stays the list price; ``credit_usd_per_hour`` is the
surcharge.

>>> from care_flows.pricing import EmbeddedPrices
>>> c = right_size("eu-north-1", 1.5, 6, prices=EmbeddedPrices())  # needs 1.8 vCPU, 7.2 GiB
>>> c.instance_type, c.usd_per_hour, c.waste_vcpu, c.waste_memory_gib
('t3.large', 0.0864, 0.5, 2.0)
>>> right_size("eu-north-1", 1.5, 6, prices=EmbeddedPrices(), families=["m5"]).instance_type
'm5.large'
>>> c = right_size("eu-north-1", 1.5, 6, prices=EmbeddedPrices(), utilisation=0.5)  # mean 0.75 of t3.large's 2 vCPU
>>> c.instance_type, c.expected_utilisation, round(c.credit_usd_per_hour, 4)  # (0.375 - 0.3 baseline) x 2 x 0.05
('t3.large', 0.375, 0.0075)
>>> c = right_size("eu-north-1", 1.5, 6, prices=EmbeddedPrices(), utilisation=1.0)  # t3.large: 0.0864 + 0.045
>>> c.instance_type, c.usd_per_hour, c.credit_usd_per_hour
('m7i-flex.large', 0.10175, 0.0)
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
import weakref
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from care_flows.errors import ConfigError, PlanningError
from care_flows.pricing import PriceSource, cpu_credit_usd_per_hour, instance_family, is_accelerated

T = TypeVar("T")

__all__ = ["UsageSummary", "SizingChoice", "BURSTABLE_FAMILIES", "fitting_types", "right_size", "sized_types"]

BURSTABLE_FAMILIES = frozenset({"t1", "t2", "t3", "t3a", "t4g"})


@dataclass(frozen=True)
class UsageSummary:
    """A usage forecast reduced to what sizing needs (vCPU and GiB, absolute, not %)."""

    peak_vcpu: float
    peak_memory_gib: float
    mean_vcpu: float | None = None
    mean_memory_gib: float | None = None

    @classmethod
    def from_any(cls, value: "UsageSummary | Mapping[str, Any]") -> "UsageSummary":
        """Accept a summary or a mapping with the same keys (extra keys ignored)."""
        if isinstance(value, UsageSummary):
            return value
        try:
            return cls(
                peak_vcpu=float(value["peak_vcpu"]),
                peak_memory_gib=float(value["peak_memory_gib"]),
                mean_vcpu=None if value.get("mean_vcpu") is None else float(value["mean_vcpu"]),
                mean_memory_gib=None if value.get("mean_memory_gib") is None else float(value["mean_memory_gib"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"usage summary {dict(value)!r} needs numeric peak_vcpu and peak_memory_gib ({exc})") from None


@dataclass(frozen=True)
class SizingChoice:
    """The chosen type and how well it fits."""

    region: str
    instance_type: str
    vcpu: float
    memory_gib: float
    usd_per_hour: float
    architecture: str
    need_vcpu: float
    need_memory_gib: float
    required_vcpu: float
    """need x (1 + headroom)"""
    required_memory_gib: float
    waste_vcpu: float
    """provisioned - needed vCPU"""
    waste_memory_gib: float
    expected_utilisation: float
    """mean (or peak) vCPU need / provisioned vCPU, for the power model"""
    n_fitting: int
    credit_usd_per_hour: float = 0.0
    """CPU-credit surcharge of a burstable type at the expected utilisation (0 when not known);
    the effective price is ``usd_per_hour + credit_usd_per_hour``"""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return asdict(self)


def _check_need(vcpu: float, memory_gib: float) -> None:
    for name, v in (("vcpu", vcpu), ("memory_gib", memory_gib)):
        if v is None or not np.isfinite(v) or v <= 0:
            raise ConfigError(f"{name} {v!r} must be a positive number (e.g. --vcpu 2 --memory-gib 8)")


def fitting_types(
    catalog: pd.DataFrame,
    vcpu: float,
    memory_gib: float,
    *,
    headroom_pct: float = 20.0,
    families: Iterable[str] | None = None,
    exclude_families: Iterable[str] = (),
    architecture: str | None = "x86_64",
    allow_burstable: bool = True,
    allow_gpu: bool = False,
    utilisation: float | None = None,
    mean_vcpu: float | None = None,
) -> pd.DataFrame:
    """Rows of ``catalog`` that fit, cheapest first (ties: fewer vCPU, less memory, name); adds ``family``.

    Also adds ``credit_usd_per_hour`` (the CPU-credit surcharge at ``min(1, mean / type vCPU)``,
    the mean being ``mean_vcpu`` when given, else ``utilisation x vcpu``; 0 when neither) and
    ``effective_usd_per_hour`` (list price + surcharge), which orders the rows.
    """
    _check_need(vcpu, memory_gib)
    if headroom_pct < 0:
        raise ConfigError(f"headroom_pct {headroom_pct!r} must be >= 0")
    f = 1.0 + headroom_pct / 100.0
    cat = catalog.assign(family=catalog["instance_type"].map(instance_family))
    mask = (cat["vcpu"].to_numpy() >= vcpu * f - 1e-9) & (cat["memory_gib"].to_numpy() >= memory_gib * f - 1e-9)
    mask &= _filter_mask(cat, families, exclude_families, architecture, allow_burstable, allow_gpu)
    fits = cat[mask]
    mean_vcpu = _mean_vcpu(vcpu, mean_vcpu, utilisation)
    utils = np.minimum(1.0, (0.0 if mean_vcpu is None else mean_vcpu) / fits["vcpu"].to_numpy(dtype=float))
    credit = [cpu_credit_usd_per_hour(t, v, u) for t, v, u in zip(fits["instance_type"], fits["vcpu"], utils)]
    fits = fits.assign(credit_usd_per_hour=np.asarray(credit, dtype=float))
    fits = fits.assign(effective_usd_per_hour=fits["usd_per_hour"] + fits["credit_usd_per_hour"])
    return fits.sort_values(["effective_usd_per_hour", "vcpu", "memory_gib", "instance_type"], kind="stable")


def _mean_vcpu(vcpu: float, mean_vcpu: float | None, utilisation: float | None) -> float | None:
    """The job's mean vCPU: ``mean_vcpu`` when known, else ``utilisation`` x the needed ``vcpu``."""
    if mean_vcpu is not None:
        return float(mean_vcpu)
    if utilisation is None:
        return None
    if not 0.0 <= float(utilisation) <= 1.0:
        raise ConfigError(f"utilisation {utilisation!r} must be between 0 and 1 (the mean CPU as a fraction of the vCPU need)")
    return float(utilisation) * float(vcpu)


def _filter_mask(cat, families, exclude_families, architecture, allow_burstable, allow_gpu) -> np.ndarray:
    mask = np.ones(len(cat), dtype=bool)
    if families is not None:
        mask &= cat["family"].isin(list(families)).to_numpy()
    if exclude_families:
        mask &= ~cat["family"].isin(list(exclude_families)).to_numpy()
    if architecture is not None:
        if architecture not in ("x86_64", "arm64"):
            raise ConfigError(f"architecture {architecture!r} is not known; use x86_64, arm64 or None for both")
        mask &= (cat["architecture"] == architecture).to_numpy()
    if not allow_burstable:
        mask &= ~cat["family"].isin(sorted(BURSTABLE_FAMILIES)).to_numpy()
    if not allow_gpu:  # the catalogue's flag, and the accelerator families whatever the price source says (review 44d L5)
        mask &= ~(cat["gpu"].astype(bool) | cat["instance_type"].map(is_accelerated).astype(bool)).to_numpy()
    return mask


_EMBEDDED: list[PriceSource] = []


def _embedded_prices() -> PriceSource:
    """One shared embedded catalogue (so the memo of :func:`right_size` serves every default call)."""
    if not _EMBEDDED:
        from care_flows.pricing import EmbeddedPrices

        _EMBEDDED.append(EmbeddedPrices())
    return _EMBEDDED[0]


def right_size(
    region: str,
    vcpu: float | None = None,
    memory_gib: float | None = None,
    *,
    prices: PriceSource | None = None,
    headroom_pct: float = 20.0,
    families: Iterable[str] | None = None,
    exclude_families: Iterable[str] = (),
    architecture: str | None = "x86_64",
    allow_burstable: bool = True,
    allow_gpu: bool = False,
    usage: UsageSummary | Mapping[str, Any] | None = None,
    utilisation: float | None = None,
) -> SizingChoice:
    """The cheapest type in ``region`` fitting ``need x (1 + headroom_pct/100)``.

    "Cheapest" is the list price plus the CPU-credit surcharge of burstable types when the job's
    mean CPU is known: a usage summary's mean vCPU, else ``utilisation`` x the needed vCPU
    (``utilisation`` is the mean as a fraction of the need, e.g. the policy's ``cpu_utilisation``);
    each type is priced at ``min(1, mean / its vCPU)``. With neither, the list price alone.

    With ``usage`` (a forecast summary) the need is its peak. ``expected_utilisation`` is the mean
    (else the peak) over the provisioned vCPU. Raises :class:`PlanningError` when nothing fits,
    naming the need and the largest type the filters allow. Results are memoised per price
    source (a catalogue is treated as immutable for the life of its source object).

    ``prices``: a price source (default: the embedded catalogue, :class:`~care_flows.pricing.EmbeddedPrices`).

    >>> c = right_size("eu-north-1", 2, 8)  # 2.4 vCPU, 9.6 GiB with 20 % headroom
    >>> c.instance_type, c.vcpu, c.memory_gib, c.usd_per_hour
    ('t3.xlarge', 4.0, 16.0, 0.1728)
    """
    if prices is None:
        prices = _embedded_prices()
    key = (region, vcpu, memory_gib, headroom_pct, None if families is None else tuple(families), tuple(exclude_families),
           architecture, allow_burstable, allow_gpu, None if usage is None else repr(usage), utilisation)
    return memoised(prices, key, lambda: _right_size(
        region, vcpu, memory_gib, prices=prices, headroom_pct=headroom_pct, families=families, exclude_families=exclude_families,
        architecture=architecture, allow_burstable=allow_burstable, allow_gpu=allow_gpu, usage=usage, utilisation=utilisation))


_CACHE: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def memoised(prices: PriceSource, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
    """``compute()`` once per price source and ``key`` (a catalogue is treated as immutable for the
    life of its source object); no memo for a source that cannot be weak-referenced. Errors are not
    memoised. :func:`right_size` keys on its arguments, whose first is a region name.

    >>> calls = []
    >>> src = _embedded_prices()
    >>> [memoised(src, ("doc-example",), lambda: calls.append(1) or len(calls)) for _ in range(2)]
    [1, 1]
    """
    try:
        cache = _CACHE.setdefault(prices, {})
    except TypeError:  # a price source that cannot be weak-referenced: no memo
        return compute()
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def _right_size(region, vcpu, memory_gib, *, prices, headroom_pct, families, exclude_families, architecture,
                allow_burstable, allow_gpu, usage, utilisation=None) -> SizingChoice:
    return next(_sized(region, vcpu, memory_gib, prices=prices, headroom_pct=headroom_pct, families=families,
                       exclude_families=exclude_families, architecture=architecture, allow_burstable=allow_burstable,
                       allow_gpu=allow_gpu, usage=usage, utilisation=utilisation))


def sized_types(
    region: str,
    vcpu: float | None = None,
    memory_gib: float | None = None,
    *,
    prices: PriceSource | None = None,
    **filters: Any,
) -> Iterator[SizingChoice]:
    """Every type in ``region`` that fits, in :func:`right_size`'s order (its choice first), built
    one at a time as they are read: planning walks them only when the cheapest breaks a carbon cap.
    ``filters``: :func:`right_size`'s keyword arguments; the same errors, no memo.

    >>> from itertools import islice
    >>> [c.instance_type for c in islice(sized_types("eu-north-1", 2, 8), 3)]
    ['t3.xlarge', 'm7i-flex.xlarge', 'm5.xlarge']
    """
    args = inspect.signature(right_size).bind(region, vcpu, memory_gib, prices=prices, **filters)  # its names and defaults
    args.apply_defaults()
    kwargs = {**args.arguments, "prices": prices if prices is not None else _embedded_prices()}
    return _sized(kwargs.pop("region"), kwargs.pop("vcpu"), kwargs.pop("memory_gib"), **kwargs)


def _sized(region, vcpu, memory_gib, *, prices, headroom_pct, families, exclude_families, architecture,
           allow_burstable, allow_gpu, usage, utilisation=None) -> Iterator[SizingChoice]:
    mean_vcpu = None
    if usage is not None:
        u = UsageSummary.from_any(usage)
        vcpu, memory_gib, mean_vcpu = u.peak_vcpu, u.peak_memory_gib, u.mean_vcpu
    if vcpu is None or memory_gib is None:
        raise ConfigError("right_size needs vcpu and memory_gib, or a usage summary")
    families = None if families is None else list(families)
    exclude_families = list(exclude_families)
    cat = prices.catalog(region)
    fits = fitting_types(
        cat, vcpu, memory_gib, headroom_pct=headroom_pct, families=families, exclude_families=exclude_families,
        architecture=architecture, allow_burstable=allow_burstable, allow_gpu=allow_gpu,
        utilisation=utilisation, mean_vcpu=mean_vcpu,
    )
    f = 1.0 + headroom_pct / 100.0
    mean_vcpu = _mean_vcpu(vcpu, mean_vcpu, utilisation)
    if fits.empty:
        allowed = cat.assign(family=cat["instance_type"].map(instance_family))
        allowed = allowed[_filter_mask(allowed, families, exclude_families, architecture, allow_burstable, allow_gpu)]
        if allowed.empty:
            known = sorted(set(cat["instance_type"].map(instance_family)))
            missing = [family for family in (families or ()) if family not in known]
            from care_flows.policy import _catalogue_families  # priced in some region: a real family, not a typo

            for family in missing:
                if family not in _catalogue_families():  # a typo ("m6" for "m6i"): say so, as a policy does
                    close = difflib.get_close_matches(family, known, n=1, cutoff=0.6)
                    raise ConfigError(f"unknown instance family {family!r} in {region}{f' (did you mean {close[0]!r}?)' if close else ''}; "
                                      "give the part before the dot of an EC2 type, e.g. 't3' or 'm6i'")
            if missing and len(missing) == len(families or ()):  # real families this region does not offer (review 50b M3)
                largest = f"none: no {' or '.join(missing)} type is offered in {region}"
            else:
                largest = "none: no type passes the family/architecture filters"
        else:
            big = allowed.sort_values(["vcpu", "memory_gib"]).iloc[-1]
            largest = f"{big['instance_type']} ({big['vcpu']:g} vCPU, {big['memory_gib']:g} GiB)"
        filters = [f"families {', '.join(families)}" if families is not None else "",
                   f"excluding {', '.join(exclude_families)}" if exclude_families else "",
                   f"{architecture} only" if architecture else "", "" if allow_burstable else "no burstable types"]
        shown = ", ".join(f for f in filters if f)
        raise PlanningError(
            f"no instance type in {region} fits {vcpu:g} vCPU and {memory_gib:g} GiB with {headroom_pct:g}% headroom"
            f"{f' ({shown})' if shown else ''}; largest allowed: {largest}; ask for less vCPU/memory, lower the "
            "headroom or allow more instance families",
            reasons={region: f"nothing fits; largest allowed: {largest}"},
        )
    need = float(vcpu if mean_vcpu is None else mean_vcpu)
    return (
        SizingChoice(
            region=region,
            instance_type=str(row.instance_type),
            vcpu=float(row.vcpu),
            memory_gib=float(row.memory_gib),
            usd_per_hour=float(row.usd_per_hour),
            architecture=str(row.architecture),
            need_vcpu=float(vcpu),
            need_memory_gib=float(memory_gib),
            required_vcpu=float(vcpu) * f,
            required_memory_gib=float(memory_gib) * f,
            waste_vcpu=float(row.vcpu) - float(vcpu),
            waste_memory_gib=float(row.memory_gib) - float(memory_gib),
            expected_utilisation=float(min(1.0, need / float(row.vcpu))),
            n_fitting=int(len(fits)),
            credit_usd_per_hour=float(row.credit_usd_per_hour),
        )
        for row in fits.itertuples(index=False)
    )
