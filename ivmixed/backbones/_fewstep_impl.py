"""The few-step AnimateDiff backbones: AnimateDiff-Lightning and AnimateLCM, each with the scheduler it was distilled for.

Both are :class:`~ivmixed.backbones._animatediff_impl.AnimateDiffBackbone` with another motion module and another
standard step; finding the models, the pair check, the image model and decoding are AnimateDiff's.

- **AnimateDiff-Lightning** loads one checkpoint file into ``MotionAdapter()`` (``load_state_dict`` of the
  safetensors file, as its model card does) and steps with ``EulerDiscreteScheduler`` (trailing spacing, linear
  betas). Euler keeps its latents in the σ scale x = x0 + σ·ε while the zigzag works on x = a·x0 + s·ε;
  :class:`EulerOnVPLatents` runs the same Euler steps on latents kept in the second form.
- **AnimateLCM** loads the AnimateLCM motion adapter, puts its LCM LoRA on the base (``load_lora_weights`` +
  ``set_adapters`` with weight 0.8, as its model card does) and steps with ``LCMScheduler`` (linear betas). The
  LCM step re-noises with the run's generator, so the standard step is stochastic like the model card's.

**Two noise tables.** The distilled motion modules run on linear betas, the SD1.5 image model was trained on
scaled-linear ones: at level t of the video model's table the image model is called at the timestep of its own
table with the nearest ᾱ (:class:`RetimedScore`; e.g. level 749 → timestep 853). The zigzag walks the video
model's table. Above level 905 the linear table is noisier than any SD1.5 level, and the image model is called at
its last timestep, 999.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from typing import Any

import torch

from ..guidance import ImageOnVideo
from ..steps import NoiseSchedule
from ._animatediff_impl import AnimateDiffBackbone
from ._diffusers import (
    Location,
    ModelRequest,
    UNetScore,
    apply_loras,
    dtype_keyword,
    explain_load_error,
    load_kwargs,
    peek_json,
    require_json,
    resolve_models,
    schedule_from_config,
    to_device,
)
from .base import Defaults
from .fewstep import (
    ANIMATELCM_GUIDANCE,
    ANIMATELCM_LORA_FILE,
    ANIMATELCM_LORA_SCALE,
    ANIMATELCM_REPO,
    ANIMATELCM_STEPS,
    DEFAULT_BASE,
    DEFAULT_IMAGE_MODEL,
    LIGHTNING_DEFAULT_STEPS,
    LIGHTNING_FILE,
    LIGHTNING_REPO,
    LIGHTNING_STEPS,
)

__all__ = ["LightningBackbone", "AnimateLCMBackbone", "EulerOnVPLatents", "RetimedScore"]

logger = logging.getLogger(__name__)

#: linear betas: the table both distilled motion modules run on (their model cards' ``beta_schedule="linear"``)
LINEAR_BETAS = {"beta_schedule": "linear"}


# -- the standard steps ----------------------------------------------------------------------------------------


class EulerOnVPLatents:
    """``EulerDiscreteScheduler`` stepping latents kept in the variance-preserving scale x = a·x0 + s·ε.

    Euler's own latents are z = x0 + σ·ε with σ = s / a, that is z = x·sqrt(σ² + 1); its ``scale_model_input``
    divides by that factor before the network. Here the latents stay in the first form, which is what the
    network sees and what the zigzag's formulas assume: ``scale_model_input`` returns x as it is, and
    :meth:`step` converts to z, takes Euler's step and converts back at the next σ. ``init_noise_sigma`` is the
    x-scale of Euler's initial noise σ_max·n, so ``origin`` follows the stock pipeline step for step (to float
    rounding). Everything else (``timesteps``, ``alphas_cumprod``, ``config``, ...) is Euler's.
    """

    def __init__(self, euler):
        self.euler = euler

    def __getattr__(self, name: str) -> Any:
        if name == "euler":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.euler, name)

    def _scale(self, index: int) -> torch.Tensor:
        sigma = self.euler.sigmas[index]
        return (sigma**2 + 1) ** 0.5

    @property
    def init_noise_sigma(self):
        return self.euler.init_noise_sigma / self._scale(0)

    def set_timesteps(self, *args, **kwargs) -> None:
        self.euler.set_timesteps(*args, **kwargs)

    def _index(self, timestep) -> int:
        if self.euler.step_index is None:
            self.euler._init_step_index(self._float(timestep))
        return self.euler.step_index

    @staticmethod
    def _float(timestep):
        return timestep.float() if torch.is_tensor(timestep) else float(timestep)

    def scale_model_input(self, sample: torch.Tensor, timestep) -> torch.Tensor:
        self._index(timestep)
        self.euler.is_scale_input_called = True
        return sample

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, generator: torch.Generator | None = None, **kwargs):
        index = self._index(timestep)
        z = sample * self._scale(index)
        out = self.euler.step(model_output, self._float(timestep), z, generator=generator, **kwargs)
        prev = out.prev_sample / self._scale(index + 1)
        return dataclasses.replace(out, prev_sample=prev.to(out.prev_sample.dtype))


def lightning_scheduler(base_config: dict[str, Any]):
    """The model card's scheduler: ``EulerDiscreteScheduler.from_config(base, timestep_spacing="trailing", beta_schedule="linear")``."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler.from_config(dict(base_config), timestep_spacing="trailing", **LINEAR_BETAS)


def lcm_scheduler(base_config: dict[str, Any]):
    """The model card's scheduler: ``LCMScheduler.from_config(base, beta_schedule="linear")``."""
    from diffusers import LCMScheduler

    return LCMScheduler.from_config(dict(base_config), **LINEAR_BETAS)


# -- the image model on the video model's noise table ---------------------------------------------------------


class RetimedScore:
    """A score model trained on one ᾱ table, called on levels of another: at level t of ``walk`` it is evaluated
    at the timestep of ``own`` whose ᾱ is nearest to ᾱ_walk(t) (the same noise level, so its ε applies as it is).

    With equal tables every level maps to itself. Levels noisier than any of ``own`` map to its last timestep.
    """

    def __init__(self, model, *, walk: NoiseSchedule, own: NoiseSchedule):
        self.model = model
        a, b = walk.alphas_cumprod.double(), own.alphas_cumprod.double()
        # nearest in log ᾱ: the tables are monotone, so one search per level
        nearest = torch.searchsorted(-b.log(), -a.log()).clamp(max=b.shape[0] - 1)
        below = (nearest - 1).clamp(min=0)
        closer_below = (b[below].log() - a.log()).abs() < (b[nearest].log() - a.log()).abs()
        self.timesteps = torch.where(closer_below, below, nearest).tolist()

    def __call__(self, x: torch.Tensor, t: int, cond: Any) -> torch.Tensor:
        return self.model(x, self.timesteps[int(t)] if t >= 0 else t, cond)


# -- the backbones ---------------------------------------------------------------------------------------------


def _few_step_defaults(steps: int, guidance: float) -> Defaults:
    return Defaults(height=512, width=512, frames=16, steps=steps, guidance=guidance, program="IV-IV", fps=8)


class _FewStepBackbone(AnimateDiffBackbone):
    """What both few-step backbones share: finding the extra files, loading the motion module, the retimed image model."""

    #: the models of the subclass besides the base and the image model, set by its ``__init__``
    _extra_requests: list[ModelRequest]

    def __init__(self, *, model: str = DEFAULT_BASE, image_model: str = DEFAULT_IMAGE_MODEL, **options: Any):
        super().__init__(model=model, image_model=image_model, **options)
        # the image model, called at the timestep of its own table (its scheduler's, else the base's)
        image_scheduler = self.locations["image_model"].read_json("scheduler/scheduler_config.json")
        own = schedule_from_config(image_scheduler or self._base_scheduler_json)
        walk = self.zigzag_schedule()
        prediction = (image_scheduler or {}).get("prediction_type", "epsilon")
        image = UNetScore(self.image_unet, schedule=own, prediction_type=prediction, repeat_cond=True)
        self.idm = ImageOnVideo(RetimedScore(image, walk=walk, own=own))

    # -- finding ---------------------------------------------------------------------------------------------

    def _find(self, model, motion_adapter, image_model, image_model_config, vae, allow_pickle, revisions) -> dict[str, Location]:
        requests = [ModelRequest("model", model, "video model (SD1.5 base)", revision=revisions["model"]), *self._extra_requests]
        requests.append(
            ModelRequest(
                "image_model", image_model, "image model (SD1.5 UNet)", ("unet/config.json", "config.json"), single_file=True,
                revision=revisions["image_model"],
            )
        )
        image_is_file = os.path.isfile(os.path.expanduser(str(image_model)))
        base_unet = peek_json(model, "unet/config.json", revisions["model"]) or {}
        if image_is_file and image_model_config is None and base_unet.get("_class_name") != "UNet2DConditionModel":
            image_model_config = DEFAULT_IMAGE_MODEL
        if image_is_file and image_model_config is not None:
            requests.append(ModelRequest("image_model_config", image_model_config, "image model config", ("unet/config.json", "config.json")))
        if vae is not None:
            requests.append(ModelRequest("vae", vae, "VAE", ("config.json", "vae/config.json"), revision=revisions["vae"]))
        return resolve_models(self.name, requests, allow_pickle=allow_pickle)

    def _read_configs(self) -> dict[str, Any]:
        configs = super()._read_configs()
        if self._is_pipeline:
            raise ValueError(
                f"--model {self.locations['model'].source} is a saved AnimateDiffPipeline; backbone '{self.name}' adds its own "
                "motion module, so give the SD1.5 base it was built on"
            )
        self._base_scheduler_json = configs["vdm_scheduler"]
        return configs

    # -- loading ---------------------------------------------------------------------------------------------

    def _kwargs(self, option: str) -> dict[str, Any]:
        return load_kwargs(self.dtype, allow_pickle=self.allow_pickle, variant=self.variants.get(option), location=self.locations[option])

    def _motion_adapter(self):
        """The loaded ``MotionAdapter`` (subclasses)."""
        raise NotImplementedError

    def _after_pipeline(self, pipe) -> None:
        """Changes to the assembled pipeline before its parts are taken (subclasses: LoRA)."""

    def _load(self) -> None:
        from diffusers import AnimateDiffPipeline, AutoencoderKL

        loc = self.locations
        logger.info("loading %s on %s", ", ".join(f"{k}={v.describe()}" for k, v in loc.items()), self.device)
        parts: dict[str, Any] = {"feature_extractor": None, "image_encoder": None, "motion_adapter": self._motion_adapter()}
        try:
            if "vae" in loc:
                sub = "vae" if loc["vae"].read_json("config.json") is None else None
                parts["vae"] = AutoencoderKL.from_pretrained(loc["vae"].path, subfolder=sub, **self._kwargs("vae"))
            pipe = AnimateDiffPipeline.from_pretrained(loc["model"].path, **parts, **self._kwargs("model"))
        except (OSError, ValueError) as exc:
            raise explain_load_error(exc, loc["model"], allow_pickle=self.allow_pickle) from exc
        self._after_pipeline(pipe)
        self.scheduler_config = dict(pipe.scheduler.config)  # the base scheduler's full config, as the stock recipe reads it
        self.unet, self.vae, self.text_encoder, self.tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
        del pipe, parts
        self._load_image_unet()

    def _load_image_unet(self) -> None:
        """The image model, as ``animatediff`` loads it (folder, hub id or single file; LoRAs), then every module to the device."""
        from diffusers import UNet2DConditionModel

        image = self.locations["image_model"]
        try:
            if image.kind == "file":
                source = self._image_config
                sub = "unet" if source.read_json("unet/config.json") is not None else None
                self.image_unet = UNet2DConditionModel.from_single_file(
                    image.path, config=source.path, subfolder=sub, local_files_only=source.kind != "hub", **{dtype_keyword(): self.dtype}
                )
            else:
                sub = "unet" if image.read_json("unet/config.json") is not None else None
                self.image_unet = UNet2DConditionModel.from_pretrained(image.path, subfolder=sub, **self._kwargs("image_model"))
        except (OSError, ValueError) as exc:
            raise explain_load_error(exc, image, allow_pickle=self.allow_pickle) from exc
        apply_loras(self.image_unet, self.loras, allow_pickle=self.allow_pickle)
        to_device(self.unet, self.vae, self.text_encoder, self.image_unet, device=self.device)

    def _file_of(self, option: str, name: str) -> str:
        """The local path of file ``name`` of model ``option`` (a file itself, a folder holding it, or a hub repo)."""
        location = self.locations[option]
        if location.kind == "file":
            return location.path
        if location.kind == "folder":
            return os.path.join(location.path, name)
        from huggingface_hub import hf_hub_download

        return hf_hub_download(location.path, name, revision=location.revision)

    def describe(self) -> dict[str, Any]:
        scheduler = self.make_scheduler()
        inner = getattr(scheduler, "euler", scheduler)
        return {
            **super().describe(),
            "scheduler": f"{type(inner).__name__} ({inner.config.timestep_spacing} spacing, {inner.config.beta_schedule} betas)",
        }


class LightningBackbone(_FewStepBackbone):
    """AnimateDiff-Lightning + SD1.5, loaded once; call :meth:`generate` as often as you like.

    Args:
        model: the SD1.5-architecture base (diffusers folder or hub id; default the model card's epiCRealism).
        motion_module: the Lightning checkpoint: a hub repo (default ``ByteDance/AnimateDiff-Lightning``) or a folder
            holding ``animatediff_lightning_{N}step_diffusers.safetensors``, or that one ``.safetensors`` file.
        distilled_steps: which checkpoint, 1, 2, 4 or 8 steps; default the count in the file's name, else 4. It is
            also the default number of sampling steps (``--steps`` may differ: the model card finds 3 steps of the
            2-step model good).
        motion_module_config: a folder or hub id whose ``config.json`` describes the motion module; default
            diffusers' ``MotionAdapter()`` defaults, which the published checkpoints fit.
        motion_module_revision: hub revision of the Lightning repository.
        Everything else: as :class:`~ivmixed.backbones._animatediff_impl.AnimateDiffBackbone` (image model, VAE,
        LoRAs on the image model, device, dtype, pickles, revisions, variants, decode chunk size).
    """

    name = "animatediff-lightning"
    defaults = _few_step_defaults(LIGHTNING_DEFAULT_STEPS, 1.0)

    def __init__(
        self,
        *,
        model: str = DEFAULT_BASE,
        motion_module: str = LIGHTNING_REPO,
        distilled_steps: int | None = None,
        motion_module_config: str | None = None,
        motion_module_revision: str | None = None,
        **options: Any,
    ):
        self.distilled_steps, self.checkpoint = lightning_checkpoint(motion_module, distilled_steps)
        self._extra_requests = [
            ModelRequest(
                "motion_module", motion_module, f"Lightning motion module ({self.checkpoint})", (self.checkpoint,),
                single_file=True, revision=motion_module_revision,
            )
        ]
        if motion_module_config is not None:
            self._extra_requests.append(ModelRequest("motion_module_config", motion_module_config, "motion module config", ("config.json",)))
        super().__init__(model=model, **options)
        self.defaults = dataclasses.replace(type(self).defaults, steps=self.distilled_steps)

    def _read_configs(self) -> dict[str, Any]:
        configs = super()._read_configs()
        self._module_config = require_json(self.locations["motion_module_config"], "config.json") if "motion_module_config" in self.locations else None
        configs["max_frames"] = (self._module_config or {}).get("motion_max_seq_length", 32)  # MotionAdapter()'s default
        return configs

    def make_scheduler(self):
        return EulerOnVPLatents(lightning_scheduler({**self.scheduler_config, "prediction_type": "epsilon"}))

    def _motion_adapter(self):
        from diffusers import MotionAdapter
        from safetensors.torch import load_file

        path = self._file_of("motion_module", self.checkpoint)
        adapter = MotionAdapter.from_config(self._module_config) if self._module_config else MotionAdapter()
        adapter.to(self.dtype)
        try:
            adapter.load_state_dict(load_file(path))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ValueError(
                f"{path} does not fit a diffusers MotionAdapter{' of ' + self.locations['motion_module_config'].source if self._module_config else ''} "
                f"({first}); use the *_diffusers.safetensors Lightning file (not the *_comfyui one), or give the matching "
                "-o motion_module_config=FOLDER"
            ) from None
        return adapter

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "distilled_steps": self.distilled_steps, "checkpoint": self.checkpoint}


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


class AnimateLCMBackbone(_FewStepBackbone):
    """AnimateLCM + SD1.5, loaded once; call :meth:`generate` as often as you like.

    Args:
        model: the SD1.5-architecture base (diffusers folder or hub id; default the model card's epiCRealism).
        motion_adapter: the AnimateLCM motion adapter: folder or hub id (default ``wangfuyun/AnimateLCM``).
        lcm_lora: the LCM LoRA of the base: a hub repo or folder holding ``AnimateLCM_sd15_t2v_lora.safetensors``
            (default the AnimateLCM repository), or one ``.safetensors`` file; None (``-o lcm_lora=none``): no LoRA.
        lcm_lora_scale: its weight (default 0.8, as the model card).
        motion_adapter_revision, lcm_lora_revision: hub revisions.
        Everything else: as :class:`~ivmixed.backbones._animatediff_impl.AnimateDiffBackbone`.
    """

    name = "animatelcm"
    defaults = _few_step_defaults(ANIMATELCM_STEPS, ANIMATELCM_GUIDANCE)

    def __init__(
        self,
        *,
        model: str = DEFAULT_BASE,
        motion_adapter: str = ANIMATELCM_REPO,
        lcm_lora: str | None = ANIMATELCM_REPO,
        lcm_lora_scale: float = ANIMATELCM_LORA_SCALE,
        lcm_lora_revision: str | None = None,
        motion_adapter_revision: str | None = None,
        **options: Any,
    ):
        import importlib.util

        self.lcm_lora_scale = float(lcm_lora_scale)
        self._extra_requests = [
            ModelRequest("motion_adapter", motion_adapter, "motion adapter (AnimateLCM)", ("config.json",), revision=motion_adapter_revision)
        ]
        if lcm_lora is not None:
            if importlib.util.find_spec("peft") is None:
                raise ImportError("the LCM LoRA of backbone 'animatelcm' needs the peft package: pip install 'ivmixed[lora]' (or pip install peft)")
            self.lora_file = os.path.basename(lcm_lora) if os.path.isfile(os.path.expanduser(str(lcm_lora))) else ANIMATELCM_LORA_FILE
            self._extra_requests.append(
                ModelRequest("lcm_lora", lcm_lora, f"LCM LoRA ({self.lora_file})", (self.lora_file,), single_file=True, revision=lcm_lora_revision)
            )
        super().__init__(model=model, motion_adapter=motion_adapter, **options)

    def make_scheduler(self):
        return lcm_scheduler({**self.scheduler_config, "prediction_type": "epsilon"})

    def _motion_adapter(self):
        from diffusers import MotionAdapter

        try:
            return MotionAdapter.from_pretrained(self.locations["motion_adapter"].path, **self._kwargs("motion_adapter"))
        except (OSError, ValueError) as exc:
            raise explain_load_error(exc, self.locations["motion_adapter"], allow_pickle=self.allow_pickle) from exc

    def _after_pipeline(self, pipe) -> None:
        if "lcm_lora" not in self.locations:
            return
        path = self._file_of("lcm_lora", self.lora_file)
        pipe.load_lora_weights(os.path.dirname(path), weight_name=os.path.basename(path), adapter_name="lcm-lora")
        pipe.set_adapters(["lcm-lora"], [self.lcm_lora_scale])

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "lcm_lora_scale": self.lcm_lora_scale if "lcm_lora" in self.locations else None}
