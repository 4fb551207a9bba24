"""Errors raised while sampling (importable without torch, so the CLI can catch them cheaply)."""

from __future__ import annotations

__all__ = ["NonFiniteLatents", "SamplingFailed"]


class NonFiniteLatents(FloatingPointError):
    """NaN or Inf appeared in the latents during sampling; the message names the step and sub-step."""


class SamplingFailed(RuntimeError):
    """A score model, the scheduler or the callback raised during sampling; the message names the step and sub-step."""
