"""The bars oracle follows the lake's definition for any price, not only whole cents."""

from __future__ import annotations

from decimal import Decimal

from testkit.expected import exact_price, expected_bars
from tickstream.contracts import make_tick


def test_a_price_counts_as_decimal_18_8_rounded_half_up() -> None:
    assert exact_price(49.9905) == Decimal("49.99050000")
    assert exact_price(1 / 3) == Decimal("0.33333333")
    assert exact_price(2 / 3) == Decimal("0.66666667")


def test_vwap_of_sub_cent_prices_is_the_exact_notional_over_the_volume() -> None:
    ticks = [
        make_tick("X", 1, 1_000_000, 49.9905, 439, 49.99, 50.0),
        make_tick("X", 2, 2_000_000, 50.0753, 232, 50.07, 50.08),
    ]
    (bar,) = expected_bars(ticks)
    notional = Decimal("49.9905") * 439 + Decimal("50.0753") * 232  # not rounded to cents
    assert bar == ("X", 0, 49.9905, 50.0753, 49.9905, 50.0753, 671, float(notional) / 671, 2)
    assert round(bar[7], 6) == 50.019820
