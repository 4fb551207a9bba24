"""The ``videocrafter2`` backbone: VideoCrafter2 as the VDM, an SD1.5-architecture pipeline as the IDM.

Everything but the model pairing comes from ivmixed: locating weights, the latent-space check, loading
with safetensors, LoRA on the image model, prompt encoding and decoding (``ivmixed.backbones._diffusers``),
and the ModelScope backbone's two-text-encoder conditioning, which VideoCrafter2 shares. What is
VideoCrafter2's own:

- the video UNet is :class:`~ivmixed_videocrafter2.unet.VideoCrafter2UNet` (fps conditioning, ``fps=24``
  by default as in the released runs), loaded from its own repository, while the text encoder, tokenizer,
  VAE and scheduler config come from a zeroscope-layout pipeline (``components``);
- the standard step is SDE-DPM-Solver++ (second order, multistep), stepped on frames (B·F, C, h, w) with
  the run's generator; its history carries across steps while the zigzag changes the latent in between,
  as in the released code; the zigzag sub-steps are DDIM moves on the same ᾱ table;
- ω = 9 and the default program ``IV-IV+VV-VV@i%3=2`` (the released ``zz = 3`` rule);
- the image model runs at the video latent size (no resize).
"""

from __future__ import annotations

from typing import Any

from ivmixed.backbones._diffusers import (
    ModelRequest,
    UNetScore,
    ddim_scheduler,
    explain_load_error,
    parse_loras,
    resolve_device,
    resolve_dtype,
    resolve_models,
    to_device,
)
from ivmixed.backbones._modelscope_impl import ModelScopeBackbone
from ivmixed.backbones.base import Defaults, Preset
from ivmixed.guidance import ImageOnVideo
from ivmixed.schedules import released_guidance
from ivmixed.steps import NoiseSchedule

from .spec import DEFAULT_COMPONENTS, DEFAULT_IMAGE_MODEL, DEFAULT_MODEL, PINNED_REVISIONS
from .unet import DEFAULT_FPS

__all__ = ["VideoCrafter2Backbone", "DEFAULTS", "RECIPE"]

#: IV-IV on every step but VV-VV where i % 3 == 2 (the released ``zz = 3`` switch)
RECIPE = "IV-IV+VV-VV@i%3=2"

REFERENCE = Preset(
    program=RECIPE,
    guidance=9.0,
    zigzag=released_guidance(),
    description="what the released VideoCrafter2 pipeline computes: denoise-first zigzags of size Δ = T // N on every "
    "step, IV-IV but VV-VV where i % 3 == 2, zigzag guidance ±4.000000953674316 (the released float32 Karras ramp), "
    "ω 9, SDE-DPM-Solver++ standard steps",
)

DEFAULTS = Defaults(height=512, width=512, frames=16, steps=50, guidance=9.0, program=RECIPE, fps=8, presets={"reference": REFERENCE})

#: the released standard step: ``DPMSolverMultistepScheduler.from_config(zeroscope, algorithm_type="sde-dpmsolver++")``
DPM_OVERRIDES = {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}


class VideoCrafter2Backbone(ModelScopeBackbone):
    """VideoCrafter2 + an SD1.5-architecture image model, loaded once; call :meth:`generate` as often as you like.

    Args:
        model: the VideoCrafter2 UNet: a folder (``config.json`` at its root or in ``unet/``) or hub id.
        components: a zeroscope-layout pipeline folder or hub id supplying the text encoder, tokenizer,
            VAE and scheduler config (its UNet is not loaded).
        image_model: the IDM: an SD1.5-architecture pipeline folder or hub id (its own text encoder).
        fps: the frame rate the video UNet is conditioned on (the released runs use 24).
        image_loras: LoRA files for the IDM's UNet, ``"FILE[:SCALE]"`` each.
        revision, components_revision, image_model_revision: hub revisions (branch, tag, commit or
            ``refs/pr/N``). For the default ids the defaults are the revisions that publish ``.safetensors``
            (:data:`~ivmixed_videocrafter2.spec.PINNED_REVISIONS`: zeroscope's and Realistic Vision V6.0 B1's
            main branches hold pickles only); any other id defaults to main.
        variant, components_variant, image_variant: weight variants, each model on its own (default
            ``fp16`` under fp16 where that model publishes it for every component loaded, else the plain files).
        device, dtype, allow_pickle, decode_chunk_size: as for the other diffusers backbones.
    """

    name = "videocrafter2"
    defaults = DEFAULTS
    standard_step_on_frames = True  # the released pipeline steps DPM-Solver on (B·F, C, h, w)

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        components: str = DEFAULT_COMPONENTS,
        image_model: str = DEFAULT_IMAGE_MODEL,
        fps: int = DEFAULT_FPS,
        image_loras: list[Any] | None = None,
        device: str | None = None,
        dtype: str | None = None,
        allow_pickle: bool = False,
        revision: str | None = None,
        components_revision: str | None = None,
        image_model_revision: str | None = None,
        variant: str | None = None,
        components_variant: str | None = None,
        image_variant: str | None = None,
        decode_chunk_size: int = 16,
    ):
        # 0. arguments that need no file
        if not isinstance(fps, (int, float)) or fps <= 0:
            raise ValueError(f"fps (the frame rate VideoCrafter2 is conditioned on) must be a positive number, got {fps!r}")
        self.fps_condition = fps
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.loras = parse_loras(image_loras, allow_pickle=allow_pickle)
        self.decode_chunk_size = int(decode_chunk_size)
        self.allow_pickle = allow_pickle
        self.image_latent_size = None

        # 1. find the three models, no network when cached
        def pinned(value: str, given: str | None) -> str | None:
            return given if given is not None else PINNED_REVISIONS.get(str(value))

        self.locations = resolve_models(
            self.name,
            [
                ModelRequest("model", model, "VideoCrafter2 UNet", markers=("config.json", "unet/config.json"), revision=pinned(model, revision)),
                ModelRequest(
                    "components",
                    components,
                    "text encoder, tokenizer and VAE (zeroscope-layout pipeline)",
                    revision=pinned(components, components_revision),
                ),
                ModelRequest(
                    "image_model",
                    image_model,
                    "image model (SD1.5-architecture pipeline with its text encoder)",
                    revision=pinned(image_model, image_model_revision),
                ),
            ],
            allow_pickle=allow_pickle,
        )
        unet_at, parts, image = self.locations["model"], self.locations["components"], self.locations["image_model"]
        self.unet_subfolder = "unet" if unet_at.read_json("unet/config.json") is not None else None

        # 2. configs only: check the pair before any weight loads
        unet_config = "unet/config.json" if self.unet_subfolder else "config.json"
        _, vdm_scheduler, _, idm_scheduler = self._check_configs(unet_at, unet_config, parts, image)
        if vdm_scheduler.get("prediction_type", "epsilon") != "epsilon":
            raise ValueError(
                f"the scheduler of {parts.source} says prediction_type={vdm_scheduler['prediction_type']!r}; "
                "VideoCrafter2 predicts epsilon — is this a zeroscope-layout pipeline?"
            )

        # 3. which weight files: variants and the pickle check, still before any weight loads
        self.variants = self._plan(
            {"model": (self.unet_subfolder or "",), "components": ("vae", "text_encoder"), "image_model": ("unet", "text_encoder")},
            {"model": variant, "components": components_variant, "image_model": image_variant},
        )

        # 4. weights
        self._load_videocrafter2()
        schedule = NoiseSchedule.from_scheduler(ddim_scheduler(self.scheduler_config))
        self.vdm = UNetScore(self.unet, schedule=schedule, call_kwargs={"fps": self.fps_condition})
        image_prediction = (idm_scheduler or {}).get("prediction_type", "epsilon")  # converted to ε in the adapter
        self.idm = ImageOnVideo(UNetScore(self.image_unet, schedule=schedule, prediction_type=image_prediction, repeat_cond=True))

    def _load_videocrafter2(self) -> None:
        import transformers
        from diffusers import AutoencoderKL

        from .unet import VideoCrafter2UNet

        unet_at, parts = self.locations["model"], self.locations["components"]
        try:
            self.unet = VideoCrafter2UNet.from_pretrained(unet_at.path, subfolder=self.unet_subfolder, **self._kwargs("model"))
        except (OSError, ValueError, EnvironmentError) as exc:
            raise explain_load_error(exc, unet_at, allow_pickle=self.allow_pickle) from exc
        try:
            kwargs = self._kwargs("components")
            self.vae = AutoencoderKL.from_pretrained(parts.path, subfolder="vae", **kwargs)
            self.text_encoder = transformers.CLIPTextModel.from_pretrained(parts.path, subfolder="text_encoder", **kwargs)
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(parts.path, subfolder="tokenizer")
        except (OSError, ValueError, EnvironmentError) as exc:
            raise explain_load_error(exc, parts, allow_pickle=self.allow_pickle) from exc
        self._load_image_pipeline()
        to_device(self.unet, self.vae, self.text_encoder, self.image_unet, self.image_text_encoder, device=self.device)

    def make_scheduler(self):
        from diffusers import DPMSolverMultistepScheduler

        return DPMSolverMultistepScheduler.from_config(dict(self.scheduler_config), **DPM_OVERRIDES)

    def zigzag_schedule(self) -> NoiseSchedule:
        # DDIM moves on the standard scheduler's ᾱ table, with DDIM's level-below-0 convention
        return NoiseSchedule.from_scheduler(ddim_scheduler(self.scheduler_config))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "fps_condition": self.fps_condition}
