"""The standard-step scheduler of the diffusers backbones and the ᾱ table a scheduler config describes."""

from __future__ import annotations

from typing import Any

from ...steps import NoiseSchedule

__all__ = ["DDIM_OVERRIDES", "ddim_scheduler", "schedule_from_config"]

#: the standard-step DDIM settings of both released pipelines (reference-code-notes §2)
DDIM_OVERRIDES = {"clip_sample": False, "timestep_spacing": "linspace", "steps_offset": 1}


def ddim_scheduler(config: dict[str, Any], **overrides):
    """A fresh ``DDIMScheduler`` from a scheduler config (any scheduler class's config), with overrides."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(dict(config), **overrides)


def schedule_from_config(config: dict[str, Any]) -> NoiseSchedule:
    """The ᾱ table a scheduler config describes."""
    return NoiseSchedule.from_scheduler(ddim_scheduler(config))
