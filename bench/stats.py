"""Small statistics helpers shared by the benchmark and its report."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

NAN = float("nan")


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100), linear between closest ranks; NaN when empty."""
    xs = sorted(values)
    if not xs:
        return NAN
    k = (len(xs) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(values: Sequence[float], scale: float = 1.0) -> dict[str, float]:
    """n, p50, p95, p99, mean and max, each multiplied by ``scale``."""
    if not values:
        return {"n": 0, "p50": NAN, "p95": NAN, "p99": NAN, "mean": NAN, "max": NAN}
    return {"n": len(values), "p50": pct(values, 50) * scale, "p95": pct(values, 95) * scale,
            "p99": pct(values, 99) * scale, "mean": statistics.fmean(values) * scale,
            "max": max(values) * scale}


def median(values: Iterable[float]) -> float:
    xs = [v for v in values if v == v]  # drop NaN
    return statistics.median(xs) if xs else NAN


def ratio(a: Any, b: Any) -> float:
    """a / b, NaN unless both are positive finite numbers."""
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return NAN
    if not (a == a and b == b) or b <= 0 or math.isinf(a) or math.isinf(b):
        return NAN
    return a / b


def rotated(items: Sequence[Any], shift: int) -> list[Any]:
    """items rotated left by shift: interleaving without a fixed first place."""
    if not items:
        return []
    k = shift % len(items)
    return list(items[k:]) + list(items[:k])
