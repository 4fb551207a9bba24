"""ivmixed: IV-mixed sampling — an image and a video diffusion model taking turns inside every sampling step.

Quick start::

    import ivmixed
    program = ivmixed.parse("IV-IV")
    backbone = ivmixed.load("toy")             # any registered backbone: toy, animatediff, modelscope, ...
    video = backbone.generate("a bright blob moving left", program=program, seed=0)
    video.save("blob.gif")

Torch-dependent names are imported on first use, so ``import ivmixed`` and ``ivmixed.parse`` stay fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .program import Cost, InvalidProgram, Program, parse
from .registry import BackboneSpec, UnknownBackbone, load_backbone, register_backbone, unregister_backbone

__version__ = "0.1.0"

load = load_backbone

_LAZY = {
    "run_program": "ivmixed.sampler",
    "SubStepEvent": "ivmixed.sampler",
    "NonFiniteLatents": "ivmixed.sampler",
    "SamplingFailed": "ivmixed.sampler",
    "ddim_step": "ivmixed.steps",
    "add_noise": "ivmixed.steps",
    "NoiseSchedule": "ivmixed.steps",
    "guided": "ivmixed.guidance",
    "GuidanceTable": "ivmixed.schedules",
    "Ramp": "ivmixed.schedules",
    "karras_ramp": "ivmixed.schedules",
    "Backbone": "ivmixed.backbones.base",
    "Video": "ivmixed.backbones.base",
    "IncompatibleModels": "ivmixed.backbones.base",
    "run_batch": "ivmixed.batch",
    "read_prompts": "ivmixed.prompts",
}

__all__ = [
    "parse",
    "Program",
    "InvalidProgram",
    "Cost",
    "load",
    "load_backbone",
    "register_backbone",
    "unregister_backbone",
    "BackboneSpec",
    "UnknownBackbone",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ivmixed' has no attribute {name!r}")
