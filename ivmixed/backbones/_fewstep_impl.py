"""The few-step AnimateDiff backbones: AnimateDiff-Lightning and AnimateLCM, each with the scheduler it was distilled for.

Both are :class:`~ivmixed.backbones._animatediff_impl.AnimateDiffBackbone` with another motion module and another
standard step (its ``load_motion_adapter`` / ``pipeline_loaded`` hooks and ``make_scheduler``); finding the models,
the pair check, the image model and decoding are AnimateDiff's, on the kit's template.

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
import inspect
import os
from typing import Any

import torch

from ..guidance import ImageOnVideo, ScoreModel
from ..steps import NoiseSchedule
from ._animatediff_impl import AnimateDiffBackbone
from .diffusers import ModelRequest, PairConfigs, UNetScore, require_json, schedule_from_config
from .fewstep import (
    ANIMATELCM,
    ANIMATELCM_LORA_FILE,
    ANIMATELCM_LORA_SCALE,
    ANIMATELCM_REPO,
    DEFAULT_BASE,
    DEFAULT_IMAGE_MODEL,
    LIGHTNING,
    LIGHTNING_DEFAULT_STEPS,
    LIGHTNING_FILE,
    LIGHTNING_REPO,
    LIGHTNING_STEPS,
    lightning_checkpoint,
)

__all__ = ["LightningBackbone", "AnimateLCMBackbone", "EulerOnVPLatents", "RetimedScore"]


#: linear betas: the table both distilled motion modules run on (their model cards' ``beta_schedule="linear"``)
LINEAR_BETAS = {"beta_schedule": "linear"}
#: the SD1.5 scheduler config (``ivmixed explain`` plans on it without weights; the grids do not depend on the betas)
SD15_SCHEDULER = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "steps_offset": 1}


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


class _FewStepBackbone(AnimateDiffBackbone):
    """What both few-step backbones share: their extra files, an SD1.5 base only, the base's full scheduler config,
    and the image model retimed onto the video model's noise table."""

    def __init__(self, *, model: str = DEFAULT_BASE, image_model: str = DEFAULT_IMAGE_MODEL, **options: Any):
        super().__init__(model=model, image_model=image_model, **options)

    #: the standard step in words (manifests, ``ivmixed explain``)
    standard_step: str = ""

    def extra_requests(self) -> list[ModelRequest]:
        """The subclass's own files (the distilled motion module, the LoRA)."""
        return []

    def requests(self) -> list[ModelRequest]:
        return [*super().requests(), *self.extra_requests()]

    def read_configs(self) -> PairConfigs:
        configs = super().read_configs()
        if (self.locations["model"].read_json("model_index.json") or {}).get("_class_name") == "AnimateDiffPipeline":
            raise ValueError(
                f"--model {self.locations['model'].source} is a saved AnimateDiffPipeline; backbone '{self.name}' adds its own "
                "motion module, so give the SD1.5 base it was built on"
            )
        self.image_scheduler_config = configs.idm_scheduler or configs.vdm_scheduler  # the image model's own ᾱ table
        return configs

    def pipeline_loaded(self, pipe) -> None:
        # the model cards build their scheduler from the loaded base scheduler's config (defaults filled in)
        self.scheduler_config = dict(pipe.scheduler.config)

    def make_scores(self) -> tuple[ScoreModel, ScoreModel]:
        vdm, _ = super().make_scores()
        own = schedule_from_config(self.image_scheduler_config)
        image = UNetScore(self.image_unet, schedule=own, prediction_type=self.image_prediction_type, repeat_cond=True)
        return vdm, ImageOnVideo(RetimedScore(image, walk=self.zigzag_schedule(), own=own))

    @classmethod
    def standard_scheduler(cls, base_config: dict[str, Any]):
        """The standard step's scheduler built from the base's scheduler config (each few-step backbone its own)."""
        raise NotImplementedError(f"{cls.__name__} must build its standard step's scheduler (standard_scheduler)")

    def make_scheduler(self):
        return self.standard_scheduler({**self.scheduler_config, "prediction_type": "epsilon"})

    @classmethod
    def explain_plan(
        cls,
        program,
        *,
        num_steps: int,
        num_frames: int,
        show_steps: int | None = 3,
        substeps: str = "delta",
        guidance: float | None = None,
        **_ignored,
    ) -> tuple[dict[str, Any], str]:
        """The sub-step plan of ``program`` on this backbone's own grid (``ivmixed explain --backbone``), without weights."""
        from ..program import explain, format_explain

        scheduler = cls.standard_scheduler(SD15_SCHEDULER)
        scheduler.set_timesteps(num_steps)
        grid = [int(t) for t in scheduler.timesteps]
        info = explain(program, num_steps, num_frames, show_steps=show_steps, grid=grid, grid_name=cls.standard_step, substeps=substeps, guidance=guidance)
        return info, format_explain(info)

    def file_of(self, option: str, name: str) -> str:
        """The local path of file ``name`` of model ``option`` (a file itself, a folder holding it, or a hub repo)."""
        location = self.locations[option]
        if location.kind == "file":
            return location.path
        if location.kind == "folder":
            return os.path.join(location.path, name)
        from huggingface_hub import hf_hub_download

        return hf_hub_download(location.path, name, revision=location.revision)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "scheduler": self.standard_step}


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

    name = LIGHTNING.name
    defaults = LIGHTNING.defaults
    standard_step = "EulerDiscreteScheduler, trailing spacing, linear betas"

    def __init__(
        self,
        *,
        motion_module: str = LIGHTNING_REPO,
        distilled_steps: int | None = None,
        motion_module_config: str | None = None,
        motion_module_revision: str | None = None,
        **options: Any,
    ):
        unknown = sorted(set(options) & set(_NOT_LIGHTNING))
        if unknown:
            raise TypeError(f"backbone '{self.name}' takes no {', '.join(unknown)}: its motion module is -o motion_module=")
        self.distilled_steps, self.checkpoint = lightning_checkpoint(motion_module, distilled_steps)
        self.module = (motion_module, motion_module_config, motion_module_revision)
        super().__init__(**options)
        self.defaults = dataclasses.replace(type(self).defaults, steps=self.distilled_steps)

    def requests(self) -> list[ModelRequest]:
        # no motion adapter folder: the Lightning file replaces it (``motion_adapter`` is no option of this backbone)
        return [request for request in super().requests() if request.option != "motion_adapter"]

    def extra_requests(self) -> list[ModelRequest]:
        module, config, revision = self.module
        requests = [
            ModelRequest(
                "motion_module", module, f"Lightning motion module ({self.checkpoint})", (self.checkpoint,), single_file=True, revision=revision
            )
        ]
        if config is not None:
            requests.append(ModelRequest("motion_module_config", config, "motion module config", ("config.json",)))
        return requests

    def read_configs(self) -> PairConfigs:
        configs = super().read_configs()
        config_at = self.locations.get("motion_module_config")
        self.module_config = require_json(config_at, "config.json") if config_at is not None else None
        self.max_frames = int((self.module_config or {}).get("motion_max_seq_length", 32))  # MotionAdapter()'s default
        if self.locations["motion_module"].kind != "hub":  # a local file: its tensor names are checked before loading
            self.check_checkpoint(self.file_of("motion_module", self.checkpoint))
        return configs

    def motion_adapter_shell(self, device: str | torch.device | None = None):
        """The ``MotionAdapter`` the checkpoint is loaded into (``motion_module_config``, else diffusers' defaults)."""
        from diffusers import MotionAdapter

        with torch.device(device or "cpu"):
            return MotionAdapter.from_config(self.module_config) if self.module_config else MotionAdapter()

    def check_checkpoint(self, path: str) -> None:
        """Refuse a file whose tensors are not those of the motion adapter (e.g. a ``*_comfyui`` file), from its header alone."""
        from safetensors import safe_open

        with safe_open(path, framework="pt") as file:
            names = set(file.keys())
        expected = set(self.motion_adapter_shell("meta").state_dict())
        missing, unexpected = sorted(expected - names), sorted(names - expected)
        if missing or unexpected:
            of = f" of {self.locations['motion_module_config'].source}" if self.module_config else " (diffusers' default shape)"
            example = f"e.g. {(missing or unexpected)[0]}"
            raise ValueError(
                f"-o motion_module={path}: its tensors are not those of a diffusers MotionAdapter{of}: {len(missing)} missing, "
                f"{len(unexpected)} unexpected ({example}). Use the *_diffusers.safetensors Lightning file (not the *_comfyui one), "
                "or give the matching -o motion_module_config=FOLDER"
            )

    def load_motion_adapter(self):
        from safetensors.torch import load_file

        adapter = self.motion_adapter_shell()
        adapter.to(self.dtype)
        adapter.load_state_dict(load_file(self.file_of("motion_module", self.checkpoint)))
        return adapter

    @classmethod
    def standard_scheduler(cls, base_config: dict[str, Any]):
        return EulerOnVPLatents(lightning_scheduler(base_config))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "distilled_steps": self.distilled_steps, "checkpoint": self.checkpoint}


_NOT_LIGHTNING = ("motion_adapter", "motion_adapter_revision", "motion_adapter_variant")
# the template shows AnimateDiff's keywords in the signature (the registry checks options against it); not the adapter's
LightningBackbone.__init__.__signature__ = inspect.signature(LightningBackbone.__init__).replace(
    parameters=[p for p in inspect.signature(LightningBackbone.__init__).parameters.values() if p.name not in _NOT_LIGHTNING]
)

class AnimateLCMBackbone(_FewStepBackbone):
    """AnimateLCM + SD1.5, loaded once; call :meth:`generate` as often as you like.

    Args:
        model: the SD1.5-architecture base (diffusers folder or hub id; default the model card's epiCRealism).
        motion_adapter: the AnimateLCM motion adapter: folder or hub id (default ``wangfuyun/AnimateLCM``).
        lcm_lora: the LCM LoRA of the base: a hub repo or folder holding ``AnimateLCM_sd15_t2v_lora.safetensors``
            (default the AnimateLCM repository), or one ``.safetensors`` file; None (``-o lcm_lora=none``): no LoRA.
        lcm_lora_scale: its weight (default 0.8, as the model card).
        lcm_lora_revision: hub revision of the LoRA's repository.
        Everything else: as :class:`~ivmixed.backbones._animatediff_impl.AnimateDiffBackbone` (``motion_adapter_revision``
        and ``motion_adapter_variant`` included).
    """

    name = ANIMATELCM.name
    defaults = ANIMATELCM.defaults
    standard_step = "LCMScheduler, linear betas"

    def __init__(
        self,
        *,
        motion_adapter: str = ANIMATELCM_REPO,
        lcm_lora: str | None = ANIMATELCM_REPO,
        lcm_lora_scale: float = ANIMATELCM_LORA_SCALE,
        lcm_lora_revision: str | None = None,
        **options: Any,
    ):
        import importlib.util

        self.lcm_lora_scale = float(lcm_lora_scale)
        self.lora = None
        if lcm_lora is not None:
            if importlib.util.find_spec("peft") is None:
                raise ImportError("the LCM LoRA of backbone 'animatelcm' needs the peft package: pip install 'ivmixed[lora]' (or pip install peft)")
            name = os.path.basename(lcm_lora) if os.path.isfile(os.path.expanduser(str(lcm_lora))) else ANIMATELCM_LORA_FILE
            self.lora = (lcm_lora, name, lcm_lora_revision)
        super().__init__(motion_adapter=motion_adapter, **options)

    def extra_requests(self) -> list[ModelRequest]:
        if self.lora is None:
            return []
        value, name, revision = self.lora
        return [ModelRequest("lcm_lora", value, f"LCM LoRA ({name})", (name,), single_file=True, revision=revision)]

    def pipeline_loaded(self, pipe) -> None:
        super().pipeline_loaded(pipe)
        if self.lora is None:
            return
        path = self.file_of("lcm_lora", self.lora[1])
        pipe.load_lora_weights(os.path.dirname(path), weight_name=os.path.basename(path), adapter_name="lcm-lora")
        pipe.set_adapters(["lcm-lora"], [self.lcm_lora_scale])

    @classmethod
    def standard_scheduler(cls, base_config: dict[str, Any]):
        return lcm_scheduler(base_config)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "lcm_lora_scale": self.lcm_lora_scale if self.lora is not None else None}


