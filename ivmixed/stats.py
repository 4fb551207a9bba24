"""Small statistics shared by ``ivmixed sweep`` and ``ivmixed eval``: Student-t intervals without a statistics library."""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["mean_ci95", "t_quantile_975"]

# t_{0.975, df} for df = 1..30, to 6 decimals
_T975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
    2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
    2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272,
)
_Z975 = 1.959963984540054


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom, to better than 1e-6.

    A table up to 30 degrees of freedom; beyond, the Cornish–Fisher expansion in 1/df to the fourth order
    (its error is below 3e-8 from df = 31 on).
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z, v = _Z975, float(df)
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
        + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4)
    )


def mean_ci95(values: Sequence[float]) -> tuple[float | None, float | None]:
    """(mean, half-width of its 95% Student-t interval) of ``values``; (mean, None) for one value, (None, None) for none."""
    xs = [float(x) for x in values]
    if not xs:
        return None, None
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, None
    var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
    return mean, t_quantile_975(len(xs) - 1) * math.sqrt(var / len(xs))
