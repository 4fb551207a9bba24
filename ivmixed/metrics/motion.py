"""Motion magnitude of a decoded video: how much consecutive frames differ, so that "coherent because frozen" shows.

A video that does not move scores perfectly on frame consistency; its motion is 0. Reading both together
tells a smooth video from a still one.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FrameDifference", "frame_difference", "motion"]


def frame_difference(frames: np.ndarray) -> float:
    """Mean absolute difference of consecutive frames, over pixels and channels: (1/(F−1)) Σ_f mean |x_{f+1} − x_f|.

    ``frames``: (F, H, W, C) in [0, 1]; the result is in [0, 1] (0 for a still video). A single frame has no
    motion to measure and gives NaN.
    """
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 4:
        raise ValueError(f"expected frames (F, H, W, C), got shape {frames.shape}")
    if frames.shape[0] < 2:
        return float("nan")
    return float(np.abs(np.diff(frames, axis=0)).mean())


class FrameDifference:
    """The ``motion`` metric: :func:`frame_difference` of a video (the prompt is not used)."""

    name = "motion"

    def __call__(self, frames: np.ndarray, prompt: str = "") -> float:
        return frame_difference(frames)

    def describe(self) -> dict:
        return {"measure": "mean absolute difference of consecutive frames, pixel values in [0, 1]"}


def motion() -> FrameDifference:
    """Factory of the ``motion`` metric (it takes no options and needs no weights)."""
    return FrameDifference()
