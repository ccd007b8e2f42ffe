"""GPU type aliases, the price table, and per-second metering over the event ledger."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from backend.config import parse_config
from backend.cost import (
    PriceTable,
    billed_intervals,
    canonical_gpu_type,
    format_usd,
    run_cost,
    usd_to_micro,
)
from backend.errors import ConfigError
from backend.runs import RunEvent, RunState

S = RunState
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def expected(rate_micro: int, devices: int, seconds: int) -> int:
    """rate x devices x seconds / 3600, rounded half up, in integers."""
    return (2 * rate_micro * devices * seconds + 3600) // 7200


def ledger(*steps: tuple[float, RunState | None]) -> list[RunEvent]:
    return [RunEvent("training-abcdefgh", at(t), s) for t, s in steps]


@pytest.mark.parametrize(
    "name, canon",
    [
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H100 PCIe", "H100"),
        ("NVIDIA H100 NVL", "H100"),
        ("nvidia-h100-mega-80gb", "H100"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA B200", "B200"),
        ("nvidia-TeslaV100", "V100"),
        ("nvidia-TeslaK80", "K80"),
        ("nvidia-TeslaP100", "P100"),
        ("Tesla V100-SXM2-16GB", "V100"),
        ("Tesla V100S-PCIE-32GB", "V100"),
        ("Tesla K80", "K80"),
        ("Tesla K40m", "K40"),
        ("Tesla P100-PCIE-16GB", "P100"),
        ("Tesla T4", "T4"),
        ("nvidia-tesla-t4", "T4"),
        ("NVIDIA-A100-SXM4-80GB", "A100"),
        ("NVIDIA A100-PCIE-40GB", "A100"),
        ("NVIDIA A100 80GB PCIe", "A100"),
        ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", "A100"),
        ("NVIDIA H100 80GB HBM3 MIG 3g.40gb", "H100"),
        ("NVIDIA A10", "A10"),
        ("NVIDIA A10G", "A10"),
        ("NVIDIA L4", "L4"),
        ("nvidia-l4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("h100", "H100"),
        ("A100", "A100"),
        ("cpu", "cpu"),
        ("cpu:3", "cpu"),
        ("NVIDIA L40", None),  # a different card from the L40S: unknown, not guessed
        ("NVIDIA GH200 480GB", None),
        ("Quadro T4000", None),
        ("NVIDIA GeForce RTX 4090", None),
        ("", None),
        (None, None),
    ],
)
def test_canonical_gpu_type(name, canon):
    assert canonical_gpu_type(name) == canon


def test_default_prices_and_overrides():
    table = PriceTable.defaults()
    assert table.rate("H100") == 6_880_000
    assert table.rate("NVIDIA H100 80GB HBM3") == 6_880_000
    assert table.rate("K80") == 900_000 and table.rate("T4") == 530_000
    assert table.rate("V100") == 3_060_000 and table.rate("A100") == 4_100_000
    assert table.rate("cpu") == 50_000
    assert table.rate("L4") is None and table.rate("weird") is None and table.rate(None) is None

    cfg = parse_config('[prices]\nH100 = 7.5\n"nvidia-TeslaV100" = 2\ndefault = 1.25\n')
    table = PriceTable.from_config(cfg)
    assert table.rate("H100") == 7_500_000
    assert table.rate("V100") == 2_000_000
    assert table.rate("A100") == 4_100_000  # default kept
    assert table.rate("L4") == 1_250_000 and table.rate("mystery card") == 1_250_000


def test_price_table_refuses_unknown_types_and_bad_prices():
    with pytest.raises(ConfigError, match="'Voodoo5'"):
        PriceTable.from_mapping({"Voodoo5": 1.0})
    with pytest.raises(ConfigError, match="H100"):
        PriceTable.from_mapping({"H100": -1})


def test_usd_to_micro_is_exact():
    assert usd_to_micro(0.1) == 100_000
    assert usd_to_micro("6.88") == 6_880_000
    assert usd_to_micro(0.000001) == 1
    with pytest.raises(ValueError):
        usd_to_micro(float("nan"))


def test_billed_intervals_follow_the_ledger():
    events = ledger(
        (0, S.QUEUED), (10, S.PENDING), (11, None), (12, S.DOWNLOADING), (20, S.PROCESSING),
        (50, S.QUEUED),  # preempted
        (80, S.PENDING), (81, S.DOWNLOADING), (82, S.PROCESSING), (100, S.STORING), (103, S.COMPLETED),
    )
    assert billed_intervals(events, now=at(999)) == [(at(10), at(50)), (at(80), at(103))]


def test_open_interval_ends_now_and_queued_only_is_unbilled():
    assert billed_intervals(ledger((0, S.QUEUED), (5, S.PENDING), (6, S.PROCESSING)), at(65)) == [(at(5), at(65))]
    assert billed_intervals(ledger((0, S.QUEUED)), at(100)) == []
    assert billed_intervals(ledger((0, S.QUEUED), (9, S.HALTED)), at(100)) == []
    assert billed_intervals(ledger((0, S.QUEUED), (5, S.PENDING), (7, S.FAILED)), at(100)) == [(at(5), at(7))]


def test_run_cost_per_second_with_minimum():
    table = PriceTable.defaults()
    events = ledger((0, S.QUEUED), (10, S.PENDING), (3610, S.STORING), (3620, S.COMPLETED))
    cost = run_cost(events, "H100", 2, table, now=at(9999))
    assert cost.billed_us == 3610 * 10**6 and cost.charged_us == cost.billed_us
    assert cost.total_micro == expected(6_880_000, 2, 3610) == 13_798_222
    assert not cost.open and not cost.unpriced
    short = run_cost(ledger((0, S.PENDING), (5, S.FAILED)), "H100", 1, table, now=at(99))
    assert short.charged_seconds == 60 and short.seconds == 5
    assert short.total_micro == expected(6_880_000, 1, 60)
    no_min = run_cost(ledger((0, S.PENDING), (5, S.FAILED)), "H100", 1, table, now=at(99), minimum_seconds=0)
    assert no_min.total_micro == expected(6_880_000, 1, 5)
    never = run_cost(ledger((0, S.QUEUED), (5, S.HALTED)), "H100", 1, table, now=at(99))
    assert never.total_micro == 0 and never.charged_us == 0


def test_run_cost_ticks_and_is_integer():
    table = PriceTable.defaults()
    events = ledger((0, S.QUEUED), (1, S.PENDING), (2, S.PROCESSING))
    a = run_cost(events, "A100", 1, table, now=at(100.5))
    b = run_cost(events, "A100", 1, table, now=at(200.25))
    assert a.open and isinstance(a.total_micro, int) and a.total_micro < b.total_micro
    assert b.billed_us == 199_250_000


def test_unpriced_is_none_not_zero():
    cost = run_cost(ledger((0, S.PENDING), (100, S.COMPLETED)), "L4", 1, PriceTable.defaults(), now=at(100))
    assert cost.unpriced and cost.total_micro is None and cost.total_usd is None
    assert any("unpriced" in line for line in cost.lines())
    priced = run_cost(
        ledger((0, S.PENDING), (100, S.COMPLETED)), "L4", 1, PriceTable.from_mapping({"default": 2}), now=at(100)
    )
    assert priced.total_micro == expected(2_000_000, 1, 100) == 55_556


def test_cpu_slots_use_the_cpu_price():
    cost = run_cost(ledger((0, S.PENDING), (3600, S.COMPLETED)), "cpu", 1, PriceTable.defaults(), now=at(3600))
    assert cost.total_micro == 50_000


def test_lines_for_the_cost_tab():
    events = ledger((0, S.QUEUED), (10, S.PENDING), (20, S.QUEUED), (30, S.PENDING), (130, S.COMPLETED))
    lines = run_cost(events, "NVIDIA H100 80GB HBM3", 2, PriceTable.defaults(), now=at(200)).lines()
    assert len(lines) == 3
    assert lines[0].startswith("2026-03-01T12:00:10Z -> 2026-03-01T12:00:20Z")
    assert "110.0 s x 2 x H100 at $6.8800/device-hour = $0.4204" in lines[-1]
    running = run_cost(ledger((0, S.PENDING)), "H100", 1, PriceTable.defaults(), now=at(30)).lines()
    assert "(running)" in running[0] and "minimum 60 s" in running[-1]


def test_format_usd():
    assert format_usd(None) == "unpriced"
    assert format_usd(0) == "$0.0000"
    assert format_usd(1_234_567_890) == "$1,234.5679"
    assert format_usd(49) == "$0.0000" and format_usd(50) == "$0.0001"


def test_run_cost_keyword_spellings():
    events = ledger((0, S.PENDING), (120, S.COMPLETED))
    by_gpus = run_cost(events=events, gpus=2, gpu_type="H100", prices=PriceTable.defaults(), now=at(200))
    assert by_gpus.total_micro == run_cost(events, "H100", 2, PriceTable.defaults(), at(200)).total_micro
    assert run_cost(events, "H100", now=at(200)).device_count == 1
