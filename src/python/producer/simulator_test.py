"""Tests of the market simulator and the fault injector (pure, no Kafka)."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from producer.simulator import (
    YEAR_US,
    DeliveryFaults,
    Instrument,
    MarketDynamics,
    SimulationConfig,
    make_market_ticks,
    select_universe,
    simulate,
)
from tickstream.contracts import Rejection, Tick, decode_tick, dedup_key

START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
VALIDATOR_NOW_US = START_US + 3_600_000_000
FAULTY = DeliveryFaults(late_fraction=0.02, duplicate_fraction=0.03, malformed_fraction=0.01)


def decode_all(values: list[bytes]) -> tuple[list[Tick], list[Rejection]]:
    ticks: list[Tick] = []
    rejections: list[Rejection] = []
    for value in values:
        result = decode_tick(value, now_us_override=VALIDATOR_NOW_US)
        (rejections if isinstance(result, Rejection) else ticks).append(result)  # type: ignore[arg-type]
    return ticks, rejections


@pytest.fixture(scope="module")
def faulty_run() -> tuple[SimulationConfig, list[bytes], list[bytes], dict[str, int]]:
    config = SimulationConfig(start_ts_us=START_US, seed=11, batch_size=4_096, faults=FAULTY)
    batches = simulate(config, 120_000)
    keys = [k for b in batches for k in b.keys]
    values = [v for b in batches for v in b.values]
    totals = {
        "ticks": sum(b.ticks for b in batches),
        "duplicates": sum(b.duplicates for b in batches),
        "malformed": sum(b.malformed for b in batches),
        "late": sum(b.late for b in batches),
    }
    return config, keys, values, totals


def test_log_returns_match_configured_drift_and_vol() -> None:
    # Two symbols, ~1.8 days between ticks of a symbol, 100 simulated years each: plain GBM.
    # High start prices keep the one-cent grid negligible over a century of random walk.
    universe = (
        Instrument("CALM", 10_000.0, 0.10, 0.15, 0.0),
        Instrument("WILD", 100_000.0, 0.045, 0.30, 0.0),
    )
    n = 40_000
    years = 100.0
    config = SimulationConfig(
        start_ts_us=START_US,
        universe=universe,
        seed=3,
        event_rate_hz=n / (len(universe) * years * YEAR_US / 1e6),
        dynamics=MarketDynamics.pure_gbm(),
    )
    ticks = make_market_ticks(config, n)
    for idx, instrument in enumerate(universe):
        mine = ticks.symbol_idx == idx
        order = np.argsort(ticks.seq[mine])
        log_price = np.log(ticks.price_cents[mine][order] / 100.0)
        dt_years = np.diff(np.concatenate(([START_US], ticks.ts_us[mine][order]))) / YEAR_US
        returns = np.diff(np.concatenate(([np.log(instrument.start_price_usd)], log_price)))
        total_years = dt_years.sum()
        vol_hat = np.sqrt((returns**2).sum() / total_years)
        drift_hat = returns.sum() / total_years + 0.5 * vol_hat**2
        drift_se = instrument.vol_annual / np.sqrt(total_years)
        assert vol_hat == pytest.approx(instrument.vol_annual, rel=0.04), instrument.symbol
        assert abs(drift_hat - instrument.drift_annual) < 5 * drift_se, (instrument.symbol, drift_hat)


def test_jumps_and_turbulence_fatten_the_tails() -> None:
    universe = (Instrument("FAT", 100.0, 0.0, 0.2, 0.0),)
    base = SimulationConfig(start_ts_us=START_US, universe=universe, seed=5, event_rate_hz=10.0)
    calm = make_market_ticks(
        SimulationConfig(**{**base.__dict__, "dynamics": MarketDynamics.pure_gbm()}), 50_000
    )
    wild = make_market_ticks(
        SimulationConfig(**{**base.__dict__, "dynamics": MarketDynamics(jumps_per_symbol_hour=20.0)}), 50_000
    )

    def kurtosis(price_cents: np.ndarray) -> float:
        r = np.diff(np.log(price_cents.astype(float)))
        return float(((r - r.mean()) ** 4).mean() / r.var() ** 2)

    assert kurtosis(wild.price_cents) > kurtosis(calm.price_cents) + 3


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    config = SimulationConfig(start_ts_us=START_US, seed=9, batch_size=1_000, faults=FAULTY)
    first = [v for b in simulate(config, 5_000) for v in b.values]
    again = [v for b in simulate(config, 5_000) for v in b.values]
    other = [
        v
        for b in simulate(SimulationConfig(start_ts_us=START_US, seed=10, faults=FAULTY), 5_000)
        for v in b.values
    ]
    assert first == again
    assert first != other


def test_fault_knobs_do_not_change_the_market() -> None:
    clean = SimulationConfig(start_ts_us=START_US, seed=9)
    faulty = SimulationConfig(start_ts_us=START_US, seed=9, faults=FAULTY)
    clean_ticks, _ = decode_all([v for b in simulate(clean, 3_000) for v in b.values])
    faulty_ticks, _ = decode_all([v for b in simulate(faulty, 3_000) for v in b.values])
    assert {dedup_key(t): t for t in clean_ticks} == {dedup_key(t): t for t in faulty_ticks}


def test_quotes_and_trades_are_consistent() -> None:
    ticks = make_market_ticks(SimulationConfig(start_ts_us=START_US, seed=2), 50_000)
    assert (ticks.bid_cents >= 1).all() and (ticks.bid_cents < ticks.ask_cents).all()
    assert ((ticks.bid_cents <= ticks.price_cents) & (ticks.price_cents <= ticks.ask_cents)).all()
    assert (ticks.size >= 1).all() and np.median(ticks.size) < ticks.size.mean()  # heavy right tail
    assert (np.diff(ticks.ts_us) >= 0).all()


def test_every_clean_record_validates_and_seq_is_contiguous_per_symbol() -> None:
    config = SimulationConfig(start_ts_us=START_US, seed=1, batch_size=2_048)
    batches = simulate(config, 30_000)
    keys = [k for b in batches for k in b.keys]
    ticks, rejections = decode_all([v for b in batches for v in b.values])
    assert rejections == []
    assert len(ticks) == 30_000
    assert all(key == t["symbol"].encode() for key, t in zip(keys, ticks, strict=True))
    seqs: dict[str, list[int]] = defaultdict(list)
    for tick in ticks:
        seqs[tick["symbol"]].append(tick["seq"])
    assert len(seqs) == len(config.universe)
    for symbol_seqs in seqs.values():
        assert symbol_seqs == list(range(1, len(symbol_seqs) + 1))


def test_faulty_feed_keeps_every_tick_exactly_once_after_dedup(faulty_run) -> None:  # type: ignore[no-untyped-def]
    config, _, values, totals = faulty_run
    ticks, rejections = decode_all(values)
    unique = {dedup_key(t) for t in ticks}
    assert len(unique) == 120_000 == totals["ticks"]
    per_symbol = Counter(symbol for symbol, _, _ in unique)
    for symbol, n in per_symbol.items():
        assert {seq for s, seq, _ in unique if s == symbol} == set(range(1, n + 1))
    assert len(values) == totals["ticks"] + totals["duplicates"] + totals["malformed"]
    assert len(rejections) == totals["malformed"]  # every malformed record is rejected, nothing else is


def test_injection_rates_are_within_tolerance(faulty_run) -> None:  # type: ignore[no-untyped-def]
    _, _, values, totals = faulty_run
    ticks, rejections = decode_all(values)
    n = totals["ticks"]
    seen: set[tuple[str, int, int]] = set()
    duplicates = late = 0
    newest_ts_us = 0
    for tick in ticks:
        key = dedup_key(tick)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        late += tick["ts_us"] < newest_ts_us
        newest_ts_us = max(newest_ts_us, tick["ts_us"])

    def within(observed: int, fraction: float) -> bool:
        expected = n * fraction
        return abs(observed - expected) < 5 * np.sqrt(expected)

    assert within(duplicates, FAULTY.duplicate_fraction), duplicates
    assert within(late, FAULTY.late_fraction), late
    assert within(len(rejections), FAULTY.malformed_fraction), len(rejections)
    assert late == pytest.approx(totals["late"], rel=0.05)  # (a late tick rarely lands in order by chance)


def test_malformed_records_fail_in_varied_ways(faulty_run) -> None:  # type: ignore[no-untyped-def]
    _, _, values, _ = faulty_run
    _, rejections = decode_all(values)
    reasons = Counter(r.reason for r in rejections)
    assert len(reasons) >= 10, reasons
    assert all(r.detail for r in rejections)


def test_select_universe() -> None:
    assert len(select_universe(None)) >= 30
    chosen = select_universe(["MSFT", "ZZZ"])
    assert [i.symbol for i in chosen] == ["MSFT", "ZZZ"]
    assert chosen[0].start_price_usd > 100 and chosen[1].start_price_usd == 100.0
