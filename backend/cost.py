"""Cost: canonical GPU types, the price table, and per-second metering over the event ledger.

This module owns billing; every engine, the facade and the live table call it, so a run's live cost
and its final cost are the same sum:

- billed states: PENDING (devices assigned) until STORING ends (`BILLED_STATES`, `BILLED_SQL`);
- billed intervals: every span the ledger records in those states (a preempted run goes back to
  QUEUED and starts a new interval when admitted again);
- billable units: the run's GPUs (GPUs x learners), or, for a run that asked for no GPU, one cpu
  slot per learner, priced as `cpu` (`billable_units`);
- the minimum: each run pays at least `minimum_seconds` once it has been billed at all; a run never
  billed (halted while queued) costs $0 whatever its type;
- the price: USD per device-hour by canonical type. A type with no price and no `default` is
  "unpriced" (None), never $0: a zero would read as "free" in a budget.

Money is integer micro-dollars everywhere; floats appear only when a number is shown.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .runs import BILLED_SQL, BILLED_STATES, RunEvent, RunState  # noqa: F401  (BILLED_SQL: re-exported)

if TYPE_CHECKING:
    from decimal import Decimal

MICRO = 1_000_000
US_PER_HOUR = 3_600 * MICRO  # microseconds in an hour

CANONICAL_GPU_TYPES = (
    "K40", "K80", "P100", "V100", "T4", "A10", "A100", "L4", "L40S", "H100", "H200", "B200",
)
CPU = "cpu"

DEFAULT_PRICES_USD: dict[str, str] = {  # strings: exact decimals, no float rounding
    "K80": "0.90",
    "T4": "0.53",
    "V100": "3.06",
    "A100": "4.10",
    "H100": "6.88",
    CPU: "0.05",
}

# Vendor words that carry no type information; removing them turns "nvidia-TeslaV100" into "V100".
_NOISE = re.compile(r"NVIDIA|TESLA|GEFORCE|QUADRO")
# A canonical type as a whole token: "A10" must not match inside "A100", "H100" not inside "GH100",
# "L4" not inside "L40S". A trailing letter is allowed ("K40m", "V100S", "A10G").
_TYPE = re.compile(r"(?<![A-Z0-9])(L40S|K40|K80|P100|V100|T4|A100|A10|L4|H100|H200|B200)(?![0-9])")
_CPU = re.compile(r"^\s*cpu(\s*:\s*\d+)?\s*$", re.IGNORECASE)


def canonical_gpu_type(name: str | None) -> str | None:
    """The canonical type for any spelling of a GPU, or None when it is not one we know.

    Accepts NVML names ("NVIDIA H100 80GB HBM3", "Tesla V100-SXM2-16GB", MIG devices such as
    "NVIDIA A100-SXM4-40GB MIG 1g.5gb"), FfDL's ("nvidia-TeslaV100"), Kubernetes node labels
    ("NVIDIA-A100-SXM4-80GB", GKE's "nvidia-tesla-t4"), and the canonical names themselves.
    """
    if not name:
        return None
    if _CPU.match(name):
        return CPU
    text = _NOISE.sub(" ", name.upper())
    text = re.sub(r"[-_/,()]+", " ", text)
    match = _TYPE.search(text)
    return match.group(1) if match else None


def usd_to_micro(value: float | str | Decimal) -> int:
    """Exact conversion of a USD amount (as written in the config) to integer micro-dollars."""
    from decimal import Decimal, InvalidOperation  # here: `runs` lists without pricing (~7 ms)

    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a price: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"not a price: {value!r}")
    return int((amount * MICRO).to_integral_value())


def format_usd(micro: int | None) -> str:
    """$12.3456 from micro-dollars (four decimals, so a minute of a cheap GPU is not $0.00)."""
    if micro is None:
        return "unpriced"
    sign = "-" if micro < 0 else ""
    micro = abs(micro)
    cents4 = (micro + 50) // 100  # round to 1/10,000 of a dollar
    return f"{sign}${cents4 // 10_000:,}.{cents4 % 10_000:04d}"


@dataclass(frozen=True)
class PriceTable:
    """USD per device-hour by canonical type, held as integer micro-dollars per hour."""

    rates: Mapping[str, int] = field(default_factory=dict)
    default: int | None = None

    @classmethod
    def defaults(cls) -> PriceTable:
        return cls({k: usd_to_micro(v) for k, v in DEFAULT_PRICES_USD.items()})

    @classmethod
    def from_mapping(cls, prices: Mapping[str, Any], *, source: str = "[prices]") -> PriceTable:
        """The defaults overridden by `prices` (keys: any spelling of a type, or `default`)."""
        rates = {k: usd_to_micro(v) for k, v in DEFAULT_PRICES_USD.items()}
        default = None
        for key, value in prices.items():
            try:
                micro = usd_to_micro(value)
            except ValueError:
                raise ConfigError(f"{source}: {key} must be a price in USD >= 0 (got {value!r})") from None
            if key == "default":
                default = micro
                continue
            canon = canonical_gpu_type(key)
            if canon is None:
                known = ", ".join((*CANONICAL_GPU_TYPES, CPU, "default"))
                raise ConfigError(f"{source}: unknown GPU type {key!r}; known types: {known}")
            rates[canon] = micro
        return cls(rates, default)

    @classmethod
    def from_config(cls, config: Any) -> PriceTable:
        source = f"{getattr(config, 'source', None) or 'config'}: [prices]"
        return cls.from_mapping(getattr(config, "prices", {}) or {}, source=source)

    def rate(self, gpu_type: str | None) -> int | None:
        """Micro-dollars per device-hour, or None when unpriced."""
        canon = canonical_gpu_type(gpu_type) if gpu_type else None
        if canon is not None and canon in self.rates:
            return self.rates[canon]
        return self.default


Interval = tuple[datetime, datetime]


def billable_units(gpus: int, learners: int = 1) -> int:
    """Devices a run pays for: `gpus` is the run's total (GPUs x learners); a run that asked for no
    GPU holds one cpu slot per learner."""
    return gpus if gpus > 0 else max(1, learners)


def billed_type(gpus: int, gpu_type: str | None) -> str | None:
    """The type a run is priced as: `cpu` for a run that asked for no GPU, else its GPU type."""
    return CPU if gpus <= 0 else gpu_type


def billed_intervals(events: Iterable[RunEvent], now: datetime) -> list[Interval]:
    """The spans the run held devices: from entering PENDING (or any billed state) until it leaves
    the billed states (STORING -> COMPLETED, back to QUEUED, FAILED, HALTED). An open span ends `now`.
    """
    intervals: list[Interval] = []
    start: datetime | None = None
    for event in events:
        state = event.state
        if state is None:
            continue
        if state in BILLED_STATES:
            if start is None:
                start = event.at
        elif start is not None:
            intervals.append((start, max(start, event.at)))
            start = None
    if start is not None:
        intervals.append((start, max(start, now)))
    return intervals


def _micros(a: datetime, b: datetime) -> int:
    delta = b - a
    return (delta.days * 86_400 + delta.seconds) * MICRO + delta.microseconds


@dataclass(frozen=True)
class CostBreakdown:
    intervals: list[Interval]
    billed_us: int  # microseconds actually held
    charged_us: int  # after the per-run minimum
    minimum_seconds: int
    gpu_type: str | None
    device_count: int
    rate_micro_per_hour: int | None
    total_micro: int | None  # None = unpriced
    open: bool  # still ticking (the last interval ends "now")

    @property
    def rate(self) -> int | None:
        """Micro-dollars per device-hour (None: unpriced)."""
        return self.rate_micro_per_hour

    @property
    def unpriced(self) -> bool:
        return self.total_micro is None

    @property
    def seconds(self) -> float:
        return self.billed_us / MICRO

    @property
    def charged_seconds(self) -> float:
        return self.charged_us / MICRO

    @property
    def total_usd(self) -> float | None:
        return None if self.total_micro is None else self.total_micro / MICRO

    def lines(self) -> list[str]:
        """The Cost tab: each interval, then seconds x devices x price = total."""
        from .runs import iso

        out = []
        for i, (a, b) in enumerate(self.intervals):
            tail = " (running)" if self.open and i == len(self.intervals) - 1 else ""
            out.append(f"{iso(a)} -> {iso(b)}  {_micros(a, b) / MICRO:,.1f} s{tail}")
        if not self.intervals:
            out.append("not billed yet (billing starts when devices are assigned)")
        seconds = f"{self.charged_us / MICRO:,.1f} s"
        if self.charged_us > self.billed_us:
            seconds += f" (minimum {self.minimum_seconds} s; held {self.billed_us / MICRO:,.1f} s)"
        what = self.gpu_type or "unknown type"
        if self.rate_micro_per_hour is None:
            out.append(f"{seconds} x {self.device_count} x {what}: unpriced (no price for {what})")
        else:
            rate = format_usd(self.rate_micro_per_hour)
            out.append(
                f"{seconds} x {self.device_count} x {what} at {rate}/device-hour"
                f" = {format_usd(self.total_micro)}"
            )
        return out


def run_cost(
    events: Iterable[RunEvent],
    gpu_type: str | None,
    device_count: int | None = None,
    prices: PriceTable | None = None,
    now: datetime | None = None,
    minimum_seconds: int = 60,
    *,
    gpus: int | None = None,
) -> CostBreakdown:
    """What a run costs from its ledger, per second, with the per-run minimum once billed.

    `gpus=` is accepted as another name for `device_count`; `prices` defaults to the default table.
    """
    if device_count is None:
        device_count = gpus if gpus is not None else 1
    if prices is None:
        prices = PriceTable.defaults()
    if now is None:
        from .runs import utcnow

        now = utcnow()
    events = list(events)
    intervals = billed_intervals(events, now)
    last_state = next((e.state for e in reversed(events) if e.state is not None), None)
    is_open = bool(intervals) and last_state in BILLED_STATES
    billed = sum(_micros(a, b) for a, b in intervals)
    charged = max(billed, minimum_seconds * MICRO) if intervals else 0
    canon = canonical_gpu_type(gpu_type) if gpu_type else None
    rate = prices.rate(canon or gpu_type)
    total = None
    if not intervals:
        total = 0  # never billed (halted while queued): nothing to pay, priced or not
    elif rate is not None:
        # Round half up on the exact integer product: no float ever touches the money.
        total = (rate * device_count * charged + US_PER_HOUR // 2) // US_PER_HOUR
    return CostBreakdown(
        intervals=intervals,
        billed_us=billed,
        charged_us=charged,
        minimum_seconds=minimum_seconds,
        gpu_type=canon or gpu_type,
        device_count=device_count,
        rate_micro_per_hour=rate,
        total_micro=total,
        open=is_open,
    )


@dataclass(frozen=True)
class Meter:
    """The price table and the per-run minimum of one config: what every engine bills with."""

    prices: PriceTable
    minimum_seconds: int = 60

    @classmethod
    def from_config(cls, config: Any) -> Meter:
        billing = getattr(config, "billing", None)
        return cls(PriceTable.from_config(config), getattr(billing, "minimum_seconds", 60))

    def bill(self, events: Iterable[RunEvent], *, gpus: int, learners: int, gpu_type: str | None,
             now: datetime) -> CostBreakdown:
        """A run's cost from its ledger; `gpus` is the run's total (GPUs x learners)."""
        return run_cost(events, billed_type(gpus, gpu_type), billable_units(gpus, learners), self.prices,
                        now, self.minimum_seconds)

    def bill_run(self, run: Any, events: Iterable[RunEvent], now: datetime) -> CostBreakdown:
        """As `bill`, for a Run (its `gpus` is already the total)."""
        return self.bill(events, gpus=run.gpus, learners=run.learners or 1, gpu_type=run.gpu_type, now=now)

    def bill_epochs(self, events: Iterable[tuple[float, str | None]], *, gpus: int, learners: int,
                    gpu_type: str | None, now: float) -> int | None:
        """Micro-dollars from a ledger of (epoch seconds, state) rows, as SQLite keeps it."""
        from datetime import timezone

        utc = timezone.utc
        ev = [RunEvent("run", datetime.fromtimestamp(at, utc), RunState(s) if s else None) for at, s in events]
        return self.bill(ev, gpus=gpus, learners=learners, gpu_type=gpu_type,
                         now=datetime.fromtimestamp(now, utc)).total_micro


__all__ = [
    "BILLED_SQL",
    "BILLED_STATES",
    "Meter",
    "CANONICAL_GPU_TYPES",
    "CPU",
    "CostBreakdown",
    "PriceTable",
    "RunState",
    "billable_units",
    "billed_type",
    "billed_intervals",
    "canonical_gpu_type",
    "format_usd",
    "run_cost",
    "usd_to_micro",
]
