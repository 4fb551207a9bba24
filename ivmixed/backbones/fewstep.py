"""Registry entries of the few-step AnimateDiff backbones: ``animatediff-lightning`` and ``animatelcm``.

Both keep AnimateDiff's layout (an SD1.5 base with a motion module as the VDM, an SD1.5 UNet as the IDM) and
swap in a distilled motion module with the scheduler it was distilled for:

- ``animatediff-lightning``: one AnimateDiff-Lightning checkpoint file (a diffusers ``MotionAdapter`` state dict,
  1, 2, 4 or 8 steps), Euler with trailing timestep spacing and linear betas, ω 1 (no guidance);
- ``animatelcm``: the AnimateLCM motion adapter plus its LCM LoRA on the base (scale 0.8), the LCM scheduler with
  linear betas, ω 2, 6 steps.

This module stays free of torch and diffusers so that ``ivmixed list`` reads the specs without importing anything
heavy; the backbones are :mod:`ivmixed.backbones._fewstep_impl`, imported on first load. Model ids live here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from ..registry import BackboneSpec, Defaults, Option
from .animatediff import DEFAULT_IMAGE_MODEL, INSTALL_HINT, LOADER_OPTIONS

#: the SD1.5 base of both model cards
DEFAULT_BASE = "emilianJR/epiCRealism"

LIGHTNING_REPO = "ByteDance/AnimateDiff-Lightning"
LIGHTNING_STEPS = (1, 2, 4, 8)
LIGHTNING_DEFAULT_STEPS = 4
#: the diffusers-format checkpoint of each step count in the Lightning repository
LIGHTNING_FILE = "animatediff_lightning_{steps}step_diffusers.safetensors"

ANIMATELCM_REPO = "wangfuyun/AnimateLCM"
ANIMATELCM_LORA_FILE = "AnimateLCM_sd15_t2v_lora.safetensors"
ANIMATELCM_LORA_SCALE = 0.8
ANIMATELCM_STEPS = 6
ANIMATELCM_GUIDANCE = 2.0

#: the model cards' settings: 16 frames of 512×512, the distilled step count, ω 1 (Lightning) and 2 (AnimateLCM)
LIGHTNING_DEFAULTS = Defaults(height=512, width=512, frames=16, steps=LIGHTNING_DEFAULT_STEPS, guidance=1.0, program="IV-IV", fps=8)
ANIMATELCM_DEFAULTS = Defaults(height=512, width=512, frames=16, steps=ANIMATELCM_STEPS, guidance=ANIMATELCM_GUIDANCE, program="IV-IV", fps=8)


@dataclass(frozen=True)
class StepCount(Option):
    """An integer option that takes only the listed values (the step counts a distilled model exists for)."""

    allowed: tuple[int, ...] = ()

    def describe(self) -> str:
        return "one of " + ", ".join(str(n) for n in self.allowed) + (", or none" if self.none_ok else "")

    def check(self, value: Any) -> Any:
        value = super().check(value)
        if value is not None and value not in self.allowed:
            return self._refuse(value)
        return value


IMAGE_OPTIONS = (
    Option("image_model", "str", DEFAULT_IMAGE_MODEL, "image model: diffusers folder, hub id or one .safetensors file"),
    Option("image_model_config", "str", None, "config folder or hub id for a single-file image model", none_ok=True),
    Option("vae", "str", None, "a VAE folder or hub id to use instead of the base's", none_ok=True),
)

LIGHTNING_OPTIONS = (
    Option("model", "str", DEFAULT_BASE, "video model: an SD1.5-architecture base folder or hub id"),
    Option(
        "motion_module",
        "str",
        LIGHTNING_REPO,
        "the Lightning checkpoint: a hub repo or folder holding animatediff_lightning_Nstep_diffusers.safetensors, or that one file",
    ),
    StepCount(
        "distilled_steps",
        "int",
        None,
        f"which Lightning checkpoint: 1, 2, 4 or 8 steps (none: the file name's count, else {LIGHTNING_DEFAULT_STEPS}); also the default --steps",
        allowed=LIGHTNING_STEPS,
        none_ok=True,
    ),
    Option(
        "motion_module_config",
        "str",
        None,
        "a folder or hub id whose config.json describes the motion module (none: diffusers' MotionAdapter() defaults, as the model card)",
        none_ok=True,
    ),
    *IMAGE_OPTIONS,
    *LOADER_OPTIONS,
)

ANIMATELCM_OPTIONS = (
    Option("model", "str", DEFAULT_BASE, "video model: an SD1.5-architecture base folder or hub id"),
    Option("motion_adapter", "str", ANIMATELCM_REPO, "the AnimateLCM motion adapter: folder or hub id (config.json at its root)"),
    Option(
        "lcm_lora",
        "str",
        ANIMATELCM_REPO,
        f"the LCM LoRA of the base: a hub repo or folder holding {ANIMATELCM_LORA_FILE}, one .safetensors file, or none",
        none_ok=True,
    ),
    Option("lcm_lora_scale", "float", ANIMATELCM_LORA_SCALE, "weight of the LCM LoRA", min=0.0, max=4.0),
    *IMAGE_OPTIONS,
    *LOADER_OPTIONS,
)

_ROLE_IDM = (
    f"SD1.5 UNet ({DEFAULT_IMAGE_MODEL}); a diffusers folder, hub id or one .safetensors file; it reuses the video "
    "model's text embeddings and VAE and is called at the timestep of its own noise table with the same ᾱ"
)

_STEP_COUNT = re.compile(r"(\d+)step", re.IGNORECASE)


def lightning_checkpoint(motion_module: str, distilled_steps: int | None) -> tuple[int, str]:
    """The step count and file name of the Lightning checkpoint to load; ``ValueError`` for a count that does not exist.

    A local file names itself; its step count is read off its name (``..._8step_...``) when it has one. A hub repo or
    folder holds the file of ``distilled_steps`` steps (default 4).
    """
    if distilled_steps is not None and (isinstance(distilled_steps, bool) or distilled_steps not in LIGHTNING_STEPS):
        raise ValueError(
            f"-o distilled_steps={distilled_steps!r}: AnimateDiff-Lightning has checkpoints for "
            f"{', '.join(map(str, LIGHTNING_STEPS))} steps; choose one of these"
        )
    path = os.path.expanduser(str(motion_module))
    if os.path.isfile(path):
        name = os.path.basename(path)
        match = _STEP_COUNT.search(name)
        named = int(match.group(1)) if match else None
        if named is not None and distilled_steps is not None and named != distilled_steps:
            raise ValueError(
                f"-o distilled_steps={distilled_steps} but -o motion_module={motion_module} is the {named}-step checkpoint "
                f"(its name says so); leave distilled_steps unset or give the {distilled_steps}-step file"
            )
        return (distilled_steps or named or LIGHTNING_DEFAULT_STEPS), name
    steps = distilled_steps or LIGHTNING_DEFAULT_STEPS
    return steps, LIGHTNING_FILE.format(steps=steps)


def lightning_steps(options: dict[str, Any]) -> int:
    """The default number of steps under these options: the distilled step count of the chosen checkpoint."""
    return lightning_checkpoint(options.get("motion_module", LIGHTNING_REPO), options.get("distilled_steps"))[0]


LIGHTNING = BackboneSpec(
    name="animatediff-lightning",
    factory="ivmixed.backbones._fewstep_impl:LightningBackbone",
    summary="AnimateDiff-Lightning (1/2/4/8-step distilled motion module on an SD1.5 base) mixed with an SD1.5 image UNet; "
    "Euler trailing, linear betas, ω 1, 4 steps",
    roles={
        "vdm": f"AnimateDiff-Lightning: SD1.5-architecture base ({DEFAULT_BASE}) + the distilled motion module "
        f"({LIGHTNING_REPO}, {LIGHTNING_FILE.format(steps='N')})",
        "idm": _ROLE_IDM,
    },
    default_models={"model": DEFAULT_BASE, "motion_module": LIGHTNING_REPO, "image_model": DEFAULT_IMAGE_MODEL},
    weight_files={
        "model": "model_index.json",
        "motion_module": LIGHTNING_FILE.format(steps=LIGHTNING_DEFAULT_STEPS),
        "image_model": "unet/config.json",
    },
    requires=("torch", "diffusers", "transformers", "safetensors"),
    install_hint=INSTALL_HINT,
    prefers_cuda=True,
    size_multiple=8,
    options=LIGHTNING_OPTIONS,
    defaults=LIGHTNING_DEFAULTS,
    steps_for=lightning_steps,
)

ANIMATELCM = BackboneSpec(
    name="animatelcm",
    factory="ivmixed.backbones._fewstep_impl:AnimateLCMBackbone",
    summary="AnimateLCM (consistency-distilled motion adapter + LCM LoRA on an SD1.5 base) mixed with an SD1.5 image UNet; "
    "LCM scheduler, linear betas, ω 2, 6 steps",
    roles={
        "vdm": f"AnimateLCM: SD1.5-architecture base ({DEFAULT_BASE}) + motion adapter ({ANIMATELCM_REPO}) + its LCM LoRA "
        f"({ANIMATELCM_LORA_FILE}, scale {ANIMATELCM_LORA_SCALE})",
        "idm": _ROLE_IDM,
    },
    default_models={"model": DEFAULT_BASE, "motion_adapter": ANIMATELCM_REPO, "image_model": DEFAULT_IMAGE_MODEL},
    weight_files={"model": "model_index.json", "motion_adapter": ANIMATELCM_LORA_FILE, "image_model": "unet/config.json"},
    requires=("torch", "diffusers", "transformers", "peft"),
    install_hint=INSTALL_HINT,
    prefers_cuda=True,
    size_multiple=8,
    options=ANIMATELCM_OPTIONS,
    defaults=ANIMATELCM_DEFAULTS,
)
