"""Market tick simulator: pure, vectorised (numpy), deterministic for a seed; no I/O.

The market model (`MarketSimulator`) draws ticks in batches:

* arrivals form one Poisson process over the universe (`event_rate_hz` ticks per second of event time),
  each tick picking a symbol with probability proportional to its `activity`;
* each symbol's mid price follows geometric Brownian motion in event time with its own annual drift and
  volatility (a 365.25-day continuous year: the simulated market trades around the clock), a two-state
  volatility regime (calm / turbulent, switching with exponential holding times) and Poisson jumps;
* quotes straddle the mid by the symbol's spread (at least one cent wide) on a one-cent grid, trades print
  between bid and ask, sizes are heavy-tailed (Pareto round lots plus some odd lots);
* `seq` counts each symbol's ticks from 1 in event-time order.

Delivery faults (`FaultInjector`) then reorder and decorate the stream the way real feeds misbehave:
late (out-of-order) ticks, duplicate sends and malformed records that fail contract validation.
The market and the faults draw from independent random streams, so changing a fault knob never changes
the simulated market for a given seed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import orjson

from producer.records import RecordBatch
from tickstream.contracts import Tick, encode_tick, encode_tick_columns, kafka_key

YEAR_US = 365.25 * 86_400 * 1_000_000
"""Microseconds in the simulator's continuous year, the unit of drift and volatility."""

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Instrument:
    """One simulated symbol: start price, GBM parameters, quoted spread and share of the tick flow."""

    symbol: str
    start_price_usd: float
    drift_annual: float
    vol_annual: float
    spread_bps: float = 1.0
    activity: float = 1.0


DEFAULT_UNIVERSE: tuple[Instrument, ...] = (
    Instrument("AAPL", 189.50, 0.10, 0.25, 0.6, 5.0),
    Instrument("MSFT", 415.20, 0.10, 0.24, 0.5, 4.0),
    Instrument("NVDA", 875.30, 0.20, 0.50, 0.8, 6.0),
    Instrument("AMZN", 178.10, 0.12, 0.32, 0.7, 4.0),
    Instrument("GOOGL", 152.40, 0.10, 0.30, 0.7, 3.0),
    Instrument("META", 495.60, 0.12, 0.38, 0.8, 3.0),
    Instrument("TSLA", 176.80, 0.05, 0.60, 1.0, 6.0),
    Instrument("BRK.B", 408.90, 0.07, 0.16, 1.2, 1.0),
    Instrument("JPM", 196.30, 0.07, 0.22, 0.9, 2.0),
    Instrument("V", 277.40, 0.08, 0.20, 0.9, 1.5),
    Instrument("UNH", 492.10, 0.06, 0.24, 1.0, 1.5),
    Instrument("XOM", 116.20, 0.05, 0.26, 0.9, 2.0),
    Instrument("JNJ", 152.70, 0.04, 0.15, 0.9, 1.5),
    Instrument("WMT", 60.30, 0.06, 0.18, 1.6, 2.0),
    Instrument("MA", 468.20, 0.08, 0.21, 1.0, 1.0),
    Instrument("PG", 161.90, 0.05, 0.15, 0.9, 1.0),
    Instrument("AVGO", 1302.50, 0.15, 0.40, 1.2, 1.5),
    Instrument("HD", 361.40, 0.06, 0.22, 1.0, 1.0),
    Instrument("CVX", 157.60, 0.04, 0.27, 0.9, 1.5),
    Instrument("LLY", 762.30, 0.15, 0.30, 1.1, 1.5),
    Instrument("KO", 60.10, 0.04, 0.14, 1.6, 1.5),
    Instrument("PEP", 168.90, 0.04, 0.15, 1.0, 1.0),
    Instrument("COST", 730.60, 0.10, 0.20, 1.1, 1.0),
    Instrument("ORCL", 125.40, 0.08, 0.30, 1.0, 1.5),
    Instrument("BAC", 37.90, 0.05, 0.28, 2.6, 3.0),
    Instrument("NFLX", 620.10, 0.10, 0.40, 1.2, 1.5),
    Instrument("AMD", 162.30, 0.12, 0.50, 0.9, 4.0),
    Instrument("INTC", 30.80, 0.00, 0.40, 3.2, 3.0),
    Instrument("DIS", 112.50, 0.04, 0.28, 1.0, 1.5),
    Instrument("CSCO", 48.20, 0.04, 0.22, 2.0, 1.5),
    Instrument("SPY", 520.40, 0.08, 0.15, 0.2, 8.0),
    Instrument("QQQ", 440.70, 0.10, 0.20, 0.3, 6.0),
)
"""Thirty-odd liquid US names and ETFs with plausible 2024 prices, drifts, vols and spreads."""


@dataclass(frozen=True)
class MarketDynamics:
    """Realism knobs of the price and size model shared by all symbols."""

    calm_regime_mean_s: float = 600.0
    turbulent_regime_mean_s: float = 120.0
    turbulent_vol_multiplier: float = 3.0
    jumps_per_symbol_hour: float = 0.5
    jump_log_sigma: float = 0.01
    size_pareto_alpha: float = 1.5
    lot_size_shares: int = 100
    odd_lot_fraction: float = 0.25
    max_size_shares: int = 1_000_000

    @classmethod
    def pure_gbm(cls) -> MarketDynamics:
        """Plain GBM: no regime switches, no jumps (for calibration and statistical tests)."""
        return cls(turbulent_vol_multiplier=1.0, jumps_per_symbol_hour=0.0)


@dataclass(frozen=True)
class DeliveryFaults:
    """How often the feed misbehaves; fractions are per tick (first sends)."""

    late_fraction: float = 0.0
    min_lateness_us: int = 1_000
    max_lateness_us: int = 2_000_000
    duplicate_fraction: float = 0.0
    max_retry_delay_us: int = 50_000
    malformed_fraction: float = 0.0


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that determines a simulated feed; equal configs give byte-identical output."""

    start_ts_us: int
    universe: tuple[Instrument, ...] = DEFAULT_UNIVERSE
    seed: int = 42
    event_rate_hz: float = 100_000.0
    batch_size: int = 16_384
    dynamics: MarketDynamics = field(default_factory=MarketDynamics)
    faults: DeliveryFaults = field(default_factory=DeliveryFaults)


@dataclass
class TickColumns:
    """A batch of ticks column-wise; prices in integer cents so quotes stay on the one-cent grid."""

    symbol_idx: IntArray
    seq: IntArray
    ts_us: IntArray
    price_cents: IntArray
    size: IntArray
    bid_cents: IntArray
    ask_cents: IntArray

    def __len__(self) -> int:
        """Number of ticks."""
        return len(self.seq)

    def take(self, idx: IntArray) -> TickColumns:
        """The ticks at positions `idx`, in that order."""
        return TickColumns(*(column[idx] for column in self._columns()))

    def concat(self, *others: TickColumns) -> TickColumns:
        """This batch followed by `others`."""
        parts = [self._columns(), *(other._columns() for other in others)]
        return TickColumns(*(np.concatenate(columns) for columns in zip(*parts, strict=True)))

    @classmethod
    def empty(cls) -> TickColumns:
        """A batch with no ticks."""
        return cls(*(np.empty(0, dtype=np.int64) for _ in range(7)))

    def _columns(self) -> tuple[IntArray, ...]:
        return (
            self.symbol_idx,
            self.seq,
            self.ts_us,
            self.price_cents,
            self.size,
            self.bid_cents,
            self.ask_cents,
        )


def select_universe(
    symbols: list[str] | None, universe: tuple[Instrument, ...] = DEFAULT_UNIVERSE
) -> tuple[Instrument, ...]:
    """The instruments named in `symbols` (all of `universe` when None); unknown symbols get defaults.

    An unknown symbol trades at 100 USD with 8 % drift and 30 % volatility.
    """
    if not symbols:
        return universe
    by_symbol = {instrument.symbol: instrument for instrument in universe}
    return tuple(by_symbol.get(symbol, Instrument(symbol, 100.0, 0.08, 0.30)) for symbol in symbols)


def spawn_rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent (market, faults) random generators derived from one seed."""
    market_seq, faults_seq = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(market_seq), np.random.default_rng(faults_seq)


class MarketSimulator:
    """Generates ticks in event-time order, batch by batch, carrying per-symbol state between batches."""

    def __init__(self, config: SimulationConfig, rng: np.random.Generator) -> None:
        """Start every symbol at its start price, in the calm regime, at `config.start_ts_us`."""
        universe = config.universe
        self._rng = rng
        self._dynamics = config.dynamics
        self._mean_gap_us = 1e6 / config.event_rate_hz
        self._clock_us = float(config.start_ts_us)
        weights = np.array([i.activity for i in universe], dtype=np.float64)
        self._symbol_p = weights / weights.sum()
        self._drift = np.array([i.drift_annual for i in universe], dtype=np.float64)
        self._vol = np.array([i.vol_annual for i in universe], dtype=np.float64)
        self._half_spread_frac = np.array([i.spread_bps for i in universe], dtype=np.float64) / 20_000
        self._log_mid = np.log(np.array([i.start_price_usd for i in universe], dtype=np.float64))
        self._last_ts_us = np.full(len(universe), config.start_ts_us, dtype=np.int64)
        self._next_seq = np.ones(len(universe), dtype=np.int64)
        self._turbulent = np.zeros(len(universe), dtype=np.bool_)

    def next_ticks(self, n: int) -> TickColumns:
        """The next `n` ticks of the whole universe, in event-time order."""
        clock_before_us = self._clock_us
        ts_us = self._draw_arrival_times(n)
        symbol_idx = self._rng.choice(len(self._symbol_p), size=n, p=self._symbol_p).astype(np.int64)
        self._switch_regimes(span_us=self._clock_us - clock_before_us)
        order = np.argsort(symbol_idx, kind="stable")
        sym_sorted = symbol_idx[order]
        counts = np.bincount(symbol_idx, minlength=len(self._symbol_p)).astype(np.int64)
        starts = np.cumsum(counts) - counts
        ts_sorted = ts_us[order]
        dt_us = ts_sorted - self._previous_ts(ts_sorted, sym_sorted, counts, starts)
        log_mid = self._log_mid[sym_sorted] + _grouped_cumsum(self._log_increments(dt_us, sym_sorted), counts)
        seq_sorted = self._next_seq[sym_sorted] + (np.arange(n, dtype=np.int64) - starts[sym_sorted])
        self._remember_last(log_mid, ts_sorted, counts, starts)
        bid_c, ask_c, price_c = self._quote_and_trade(np.exp(log_mid), sym_sorted)
        size = self._draw_sizes(n)
        return _unsort(order, TickColumns(sym_sorted, seq_sorted, ts_sorted, price_c, size, bid_c, ask_c))

    def _draw_arrival_times(self, n: int) -> IntArray:
        arrivals = self._clock_us + np.cumsum(self._rng.exponential(self._mean_gap_us, n))
        if n:
            self._clock_us = float(arrivals[-1])
        return np.floor(arrivals).astype(np.int64)

    def _switch_regimes(self, span_us: float) -> None:
        """Flip each symbol's regime with the probability of a switch within `span_us` (per batch)."""
        d = self._dynamics
        if d.turbulent_vol_multiplier == 1.0:
            return
        mean_hold_s = np.where(self._turbulent, d.turbulent_regime_mean_s, d.calm_regime_mean_s)
        p_switch = 1.0 - np.exp(-(span_us / 1e6) / mean_hold_s)
        self._turbulent ^= self._rng.random(len(self._turbulent)) < p_switch

    def _previous_ts(
        self, ts_sorted: IntArray, sym_sorted: IntArray, counts: IntArray, starts: IntArray
    ) -> IntArray:
        previous = np.empty_like(ts_sorted)
        previous[1:] = ts_sorted[:-1]
        firsts = starts[counts > 0]
        previous[firsts] = self._last_ts_us[sym_sorted[firsts]]
        return previous

    def _log_increments(self, dt_us: IntArray, sym_sorted: IntArray) -> FloatArray:
        d = self._dynamics
        n = len(dt_us)
        dt_years = dt_us / YEAR_US
        vol = self._vol[sym_sorted] * np.where(self._turbulent[sym_sorted], d.turbulent_vol_multiplier, 1.0)
        increments: FloatArray = (self._drift[sym_sorted] - 0.5 * vol**2) * dt_years + vol * np.sqrt(
            dt_years
        ) * self._rng.standard_normal(n)
        if d.jumps_per_symbol_hour > 0.0:
            p_jump = 1.0 - np.exp(-d.jumps_per_symbol_hour * dt_us / 3.6e9)
            jumps = np.flatnonzero(self._rng.random(n) < p_jump)
            increments[jumps] += self._rng.normal(0.0, d.jump_log_sigma, len(jumps))
        return increments

    def _remember_last(
        self, log_mid: FloatArray, ts_sorted: IntArray, counts: IntArray, starts: IntArray
    ) -> None:
        traded = np.flatnonzero(counts > 0)
        lasts = starts[traded] + counts[traded] - 1
        self._log_mid[traded] = log_mid[lasts]
        self._last_ts_us[traded] = ts_sorted[lasts]
        self._next_seq += counts

    def _quote_and_trade(
        self, mid_usd: FloatArray, sym_sorted: IntArray
    ) -> tuple[IntArray, IntArray, IntArray]:
        half_spread_usd = np.maximum(mid_usd * self._half_spread_frac[sym_sorted], 0.005)
        bid_c = np.maximum(np.floor((mid_usd - half_spread_usd) * 100.0), 1.0).astype(np.int64)
        ask_c = np.maximum(np.ceil((mid_usd + half_spread_usd) * 100.0).astype(np.int64), bid_c + 1)
        price_c = bid_c + np.rint(self._rng.random(len(bid_c)) * (ask_c - bid_c)).astype(np.int64)
        return bid_c, ask_c, price_c

    def _draw_sizes(self, n: int) -> IntArray:
        d = self._dynamics
        lots = np.ceil(1.0 + self._rng.pareto(d.size_pareto_alpha, n)).astype(np.int64) * d.lot_size_shares
        odd = self._rng.integers(1, max(d.lot_size_shares, 2), n)
        is_odd = self._rng.random(n) < d.odd_lot_fraction
        return np.minimum(np.where(is_odd, odd, lots), d.max_size_shares).astype(np.int64)


def _grouped_cumsum(values: FloatArray, counts: IntArray) -> FloatArray:
    """Cumulative sums restarting at each group of a group-sorted array (groups of sizes `counts`)."""
    running = np.cumsum(values)
    group_end = np.cumsum(counts)
    before_group = np.concatenate(([0.0], running))[group_end - counts]
    result: FloatArray = running - np.repeat(before_group, counts)
    return result


def _unsort(order: IntArray, sorted_columns: TickColumns) -> TickColumns:
    """Put columns sorted by `order` back in original (event-time) order."""
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order), dtype=order.dtype)
    return sorted_columns.take(inverse)


@dataclass
class _Held:
    """Ticks waiting to be sent, with send time and flags: late first send, duplicate send."""

    ticks: TickColumns
    send_at_us: IntArray
    is_late: BoolArray
    is_duplicate: BoolArray

    @classmethod
    def empty(cls) -> _Held:
        return cls(TickColumns.empty(), np.empty(0, np.int64), np.empty(0, np.bool_), np.empty(0, np.bool_))

    def concat(self, other: _Held) -> _Held:
        return _Held(
            self.ticks.concat(other.ticks),
            np.concatenate((self.send_at_us, other.send_at_us)),
            np.concatenate((self.is_late, other.is_late)),
            np.concatenate((self.is_duplicate, other.is_duplicate)),
        )

    def take(self, idx: IntArray) -> _Held:
        return _Held(self.ticks.take(idx), self.send_at_us[idx], self.is_late[idx], self.is_duplicate[idx])


class FaultInjector:
    """Turns event-ordered ticks into send-ordered encoded records with late, duplicate and bad records.

    A late tick is sent `min_lateness_us`..`max_lateness_us` of event time after it happened, i.e. after
    ticks that happened later; a duplicate is a second send of the same bytes up to `max_retry_delay_us`
    later; malformed records are extra records built from a real tick and broken in one of the ways in
    `MALFORMATIONS`. Ticks whose send time lies beyond the current batch are held for the next one.
    """

    def __init__(self, faults: DeliveryFaults, symbols: list[str], rng: np.random.Generator) -> None:
        """Prepare per-symbol keys; `symbols[i]` is the symbol of `symbol_idx == i`."""
        self._faults = faults
        self._rng = rng
        self._symbols = np.array(symbols, dtype=object)
        self._keys = np.array([kafka_key(s) for s in symbols], dtype=object)
        self._held = _Held.empty()

    def apply(self, ticks: TickColumns) -> RecordBatch:
        """Send-ordered records for `ticks` plus earlier held ticks now due."""
        incoming = self._schedule(ticks)
        candidates = self._held.concat(incoming)
        horizon_us = int(ticks.ts_us.max()) if len(ticks) else np.iinfo(np.int64).max
        order = np.argsort(candidates.send_at_us, kind="stable")
        due = candidates.send_at_us[order] <= horizon_us
        self._held = candidates.take(order[~due])
        return self._encode(candidates.take(order[due]), new_ticks=len(ticks))

    def drain(self) -> RecordBatch:
        """Every held tick, in send order (call once the feed ends)."""
        held, self._held = self._held, _Held.empty()
        return self._encode(held.take(np.argsort(held.send_at_us, kind="stable")), new_ticks=0)

    def _schedule(self, ticks: TickColumns) -> _Held:
        f = self._faults
        n = len(ticks)
        send_at_us = ticks.ts_us.copy()
        is_late = self._rng.random(n) < f.late_fraction
        send_at_us[is_late] += self._rng.integers(
            f.min_lateness_us, f.max_lateness_us + 1, int(is_late.sum())
        )
        dup_idx = np.flatnonzero(self._rng.random(n) < f.duplicate_fraction)
        retry_delay_us = self._rng.integers(0, f.max_retry_delay_us + 1, len(dup_idx))
        firsts = _Held(ticks, send_at_us, is_late, np.zeros(n, np.bool_))
        repeats = _Held(
            ticks.take(dup_idx),
            send_at_us[dup_idx] + retry_delay_us,
            is_late[dup_idx],
            np.ones(len(dup_idx), np.bool_),
        )
        return firsts.concat(repeats)

    def _encode(self, due: _Held, new_ticks: int) -> RecordBatch:
        t = due.ticks
        keys: list[bytes] = self._keys[t.symbol_idx].tolist()
        values = encode_tick_columns(
            self._symbols[t.symbol_idx],
            t.seq,
            t.ts_us,
            t.price_cents / 100.0,
            t.size,
            t.bid_cents / 100.0,
            t.ask_cents / 100.0,
        )
        n_dup = int(due.is_duplicate.sum())
        n_late = int((due.is_late & ~due.is_duplicate).sum())
        n_bad = int(self._rng.binomial(new_ticks, self._faults.malformed_fraction)) if len(values) else 0
        keys, values = self._insert_malformed(keys, values, n_bad)
        return RecordBatch(keys, values, ticks=len(t) - n_dup, duplicates=n_dup, malformed=n_bad, late=n_late)

    def _insert_malformed(
        self, keys: list[bytes], values: list[bytes], n_bad: int
    ) -> tuple[list[bytes], list[bytes]]:
        if n_bad == 0:
            return keys, values
        templates = self._rng.integers(0, len(values), n_bad)
        kinds = self._rng.integers(0, len(MALFORMATIONS), n_bad)
        bad_values = [
            MALFORMATIONS[kind](_tick_from_json(values[i]), self._rng)
            for i, kind in zip(templates, kinds, strict=True)
        ]
        total = len(values) + n_bad
        is_bad = np.zeros(total, np.bool_)
        is_bad[self._rng.choice(total, n_bad, replace=False)] = True
        out_keys = np.empty(total, dtype=object)
        out_values = np.empty(total, dtype=object)
        out_keys[~is_bad], out_values[~is_bad] = keys, values
        out_keys[is_bad] = [keys[i] for i in templates]
        out_values[is_bad] = bad_values
        return out_keys.tolist(), out_values.tolist()


def _tick_from_json(value: bytes) -> Tick:
    tick: Tick = orjson.loads(value)
    return tick


Malformation = Callable[[Tick, np.random.Generator], bytes]


def _truncated_json(tick: Tick, rng: np.random.Generator) -> bytes:
    raw = encode_tick(tick)
    return raw[: int(rng.integers(1, len(raw) - 1))]


def _json_array(tick: Tick, rng: np.random.Generator) -> bytes:
    return orjson.dumps(list(tick.values()))


def _missing_field(tick: Tick, rng: np.random.Generator) -> bytes:
    names = list(tick)
    name = names[int(rng.integers(0, len(names)))]
    return orjson.dumps({k: v for k, v in tick.items() if k != name})


def _price_as_string(tick: Tick, rng: np.random.Generator) -> bytes:
    return orjson.dumps({**tick, "price": f"{tick['price']:.2f}"})


def _non_positive_price(tick: Tick, rng: np.random.Generator) -> bytes:
    return orjson.dumps({**tick, "price": -tick["price"] if rng.random() < 0.5 else 0.0})


def _zero_size(tick: Tick, rng: np.random.Generator) -> bytes:
    return orjson.dumps({**tick, "size": 0})


def _lower_case_symbol(tick: Tick, rng: np.random.Generator) -> bytes:
    return orjson.dumps({**tick, "symbol": tick["symbol"].lower()})


def _ts_in_milliseconds(tick: Tick, rng: np.random.Generator) -> bytes:
    return orjson.dumps({**tick, "ts_us": tick["ts_us"] // 1_000})


def _ts_in_nanoseconds(tick: Tick, rng: np.random.Generator) -> bytes:
    return orjson.dumps({**tick, "ts_us": tick["ts_us"] * 1_000})


def _crossed_quote(tick: Tick, rng: np.random.Generator) -> bytes:
    return orjson.dumps({**tick, "bid": tick["ask"] + 0.05})


def _future_schema_version(tick: Tick, rng: np.random.Generator) -> bytes:
    return orjson.dumps({**tick, "schema_version": 2})


def _zero_seq(tick: Tick, rng: np.random.Generator) -> bytes:
    return orjson.dumps({**tick, "seq": 0})


MALFORMATIONS: tuple[Malformation, ...] = (
    _truncated_json,
    _json_array,
    _missing_field,
    _price_as_string,
    _non_positive_price,
    _zero_size,
    _lower_case_symbol,
    _ts_in_milliseconds,
    _ts_in_nanoseconds,
    _crossed_quote,
    _future_schema_version,
    _zero_seq,
)
"""Ways a record goes bad; each yields bytes that `tickstream.contracts.decode_tick` rejects."""


class SimulatedFeed:
    """A simulated feed of encoded records: iterate for batches, then `drain()` the held late ticks."""

    def __init__(self, config: SimulationConfig, tick_count: int | None = None) -> None:
        """A feed of `tick_count` ticks (endless when None)."""
        market_rng, faults_rng = spawn_rngs(config.seed)
        self.config = config
        self._remaining = tick_count
        self._market = MarketSimulator(config, market_rng)
        self._faults = FaultInjector(config.faults, [i.symbol for i in config.universe], faults_rng)

    def __iter__(self) -> Iterator[RecordBatch]:
        """Record batches until `tick_count` ticks were generated (held late ticks not included)."""
        while self._remaining is None or self._remaining > 0:
            n = (
                self.config.batch_size
                if self._remaining is None
                else min(self.config.batch_size, self._remaining)
            )
            if self._remaining is not None:
                self._remaining -= n
            yield self._faults.apply(self._market.next_ticks(n))

    def drain(self) -> RecordBatch:
        """Late ticks still held back; send them before stopping or their seq numbers go missing."""
        return self._faults.drain()


def simulate(config: SimulationConfig, tick_count: int) -> list[RecordBatch]:
    """All record batches of a finite feed, including the final drain."""
    feed = SimulatedFeed(config, tick_count)
    return [*feed, feed.drain()]


def make_market_ticks(config: SimulationConfig, tick_count: int) -> TickColumns:
    """`tick_count` ticks of the market model alone (event order, no faults), for analysis and tests."""
    market = MarketSimulator(config, spawn_rngs(config.seed)[0])
    batches = [
        market.next_ticks(min(config.batch_size, tick_count - done))
        for done in range(0, tick_count, config.batch_size)
    ]
    return TickColumns.empty().concat(*batches)
