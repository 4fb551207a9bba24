"""Checks of a generation request that need no model: one place, used by the CLI before loading and by backbones."""

from __future__ import annotations

import math

__all__ = ["check_request"]


def check_request(
    *,
    frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    size_multiple: int = 8,
    backbone: str = "?",
) -> None:
    """Raise ``ValueError`` naming the option, the bad value and the fix; ``None`` means "not given"."""
    for name, value, least in (("frames", frames, 1), ("steps", steps, 2)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
            raise ValueError(f"--{name} must be an integer >= {least}, got {value!r}")
    for name, value in (("height", height), ("width", width)):
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"--{name} must be a positive integer, got {value!r}")
        if value % size_multiple:
            nearest = max(size_multiple, round(value / size_multiple) * size_multiple)
            raise ValueError(
                f"--{name} {value} is not a multiple of {size_multiple}, which backbone '{backbone}' needs "
                f"(its VAE down-samples by {size_multiple}); try {nearest}"
            )
    if guidance is not None and not math.isfinite(guidance):
        raise ValueError(f"--guidance must be a finite number, got {guidance!r}")
