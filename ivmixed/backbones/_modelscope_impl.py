"""The ``modelscope`` backbone: ModelScope text-to-video 1.7B as the VDM, a full SD1.5 pipeline as the IDM.

Unlike ``animatediff``, the IDM here has its own text encoder (SD1.5's CLIP-L; ModelScope's is 1024-wide
OpenCLIP-H), and it sees the frame latents resized (nearest) to its own sample size — 64×64 for SD1.5,
whatever the video size — as in the released code. ``image_latent_size`` changes that target; 0 turns the
resize off. Loading follows the same three stages as ``animatediff`` (find, check configs, load).
"""

from __future__ import annotations

import logging
from typing import Any

from ..guidance import ImageOnVideo
from ..schedules import released_guidance
from ..steps import NoiseSchedule
from ._diffusers import (
    DDIM_OVERRIDES,
    DiffusersBackbone,
    ModelRequest,
    NearestResized,
    UNetScore,
    apply_loras,
    check_pair,
    encode_prompt_pair,
    explain_load_error,
    load_kwargs,
    parse_loras,
    plan_weights,
    resolve_device,
    resolve_dtype,
    require_json,
    resolve_models,
    to_device,
)
from .base import Conditioning, Defaults, Preset
from .modelscope import DEFAULT_IMAGE_MODEL, DEFAULT_MODEL

__all__ = ["ModelScopeBackbone", "DEFAULTS"]

logger = logging.getLogger(__name__)

REFERENCE = Preset(
    program="IV-IV",
    guidance=7.5,
    zigzag=released_guidance(),
    description="what the released IV-mixed ModelScope pipeline computes: denoise-first IV-IV on every step "
    "(I at t, V at t−Δ, I⁻¹ at t−2Δ, V⁻¹ at t−Δ; Δ = T // N), zigzag guidance ±4.000000953674316 (the released "
    "float32 Karras ramp), ω 7.5, the image model on "
    "latents resized (nearest) to its sample size",
)

DEFAULTS = Defaults(height=256, width=256, frames=16, steps=50, guidance=7.5, program="IV-IV", fps=8, presets={"reference": REFERENCE})


class ModelScopeBackbone(DiffusersBackbone):
    """ModelScope T2V + SD1.5, loaded once; call :meth:`generate` as often as you like.

    Args:
        model: the video model: a ``TextToVideoSDPipeline`` folder or hub id.
        image_model: the IDM: an SD1.5 pipeline folder or hub id (UNet, text encoder and tokenizer are used).
        image_latent_size: the latent size the IDM sees (default: its UNet's ``sample_size``, 64 for SD1.5);
            0 runs it at the video latent size.
        image_loras: LoRA files for the IDM's UNet, ``"FILE[:SCALE]"`` each.
        device: ``cpu``, ``cuda``, ``cuda:1`` …; default CUDA when available.
        dtype: ``fp32``, ``fp16`` or ``bf16``; default fp16 on CUDA, fp32 on the CPU.
        allow_pickle: also load pickled (``.bin``/``.ckpt``) weights. Off by default: pickles can run code.
        revision, image_model_revision: hub revisions (branch, tag, commit or ``refs/pr/N``) of the video
            and the image model; default main.
        variant, image_variant: weight variant of the video and the image model, each chosen on its own:
            default ``fp16`` under fp16 (the CUDA default) where that model publishes fp16 files for every
            component loaded (the released code loads the video model's ``fp16``), else the plain files;
            ``none`` forces the plain files.
        decode_chunk_size: frames decoded by the VAE at a time.
    """

    name = "modelscope"
    defaults = DEFAULTS
    standard_step_on_frames = True  # TextToVideoSDPipeline steps the scheduler on (B·F, C, h, w)

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        image_model: str = DEFAULT_IMAGE_MODEL,
        image_latent_size: int | None = None,
        image_loras: list[Any] | None = None,
        device: str | None = None,
        dtype: str | None = None,
        allow_pickle: bool = False,
        variant: str | None = None,
        image_variant: str | None = None,
        revision: str | None = None,
        image_model_revision: str | None = None,
        decode_chunk_size: int = 16,
    ):
        # 0. arguments that need no file
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.loras = parse_loras(image_loras, allow_pickle=allow_pickle)
        self.decode_chunk_size = int(decode_chunk_size)
        self.allow_pickle = allow_pickle
        if image_latent_size is not None and (not isinstance(image_latent_size, int) or image_latent_size < 0):
            raise ValueError(f"--image-latent-size must be a non-negative integer (0: no resize), got {image_latent_size!r}")

        # 1. find both models, no network when cached
        self.locations = resolve_models(
            self.name,
            [
                ModelRequest("model", model, "video model (TextToVideoSDPipeline)", revision=revision),
                ModelRequest("image_model", image_model, "image model (SD1.5 pipeline with its text encoder)", revision=image_model_revision),
            ],
            allow_pickle=allow_pickle,
        )
        video, image = self.locations["model"], self.locations["image_model"]

        # 2. configs only: check the pair before any weight loads
        vdm_unet, vdm_scheduler, idm_unet, idm_scheduler = self._check_configs(video, "unet/config.json", video, image)
        if image_latent_size is None:
            size = idm_unet.get("sample_size", 64)
            self.image_latent_size = tuple(size) if isinstance(size, (list, tuple)) else (int(size), int(size))
        else:
            self.image_latent_size = None if image_latent_size == 0 else (image_latent_size, image_latent_size)
        prediction = vdm_scheduler.get("prediction_type", "epsilon")
        image_prediction = (idm_scheduler or {}).get("prediction_type", "epsilon")
        if prediction != "epsilon":  # the adapter converts to ε, so the standard step must read ε too
            self.scheduler_overrides = {**DDIM_OVERRIDES, "prediction_type": "epsilon"}

        # 3. which weight files: variants and the pickle check, still before any weight loads
        self.variants = self._plan(
            {"model": ("unet", "vae", "text_encoder"), "image_model": ("unet", "text_encoder")},
            {"model": variant, "image_model": image_variant},
        )

        # 4. weights
        self._load()
        schedule = NoiseSchedule.from_scheduler(self.make_scheduler())
        self.vdm = UNetScore(self.unet, schedule=schedule, prediction_type=prediction, repeat_cond=False)
        image_score = UNetScore(self.image_unet, schedule=schedule, prediction_type=image_prediction, repeat_cond=True)
        if self.image_latent_size is not None:
            image_score = NearestResized(image_score, self.image_latent_size)
        self.idm = ImageOnVideo(image_score)

    def _check_configs(self, unet_at, unet_config: str, parts, image) -> tuple[dict, dict, dict, dict | None]:
        """Read the configs of both models (no weights) and refuse a pair that cannot be mixed.

        ``unet_at``/``unet_config`` locate the video UNet's config, ``parts`` the folder with the video model's
        scheduler, VAE and text encoder, ``image`` the SD-layout image pipeline. Sets the scheduler config, the
        latent channels and the VAE factor; returns the video UNet's and scheduler's configs and the image
        UNet's and scheduler's.
        """
        vdm_unet = require_json(unet_at, unet_config)
        vdm_scheduler = require_json(parts, "scheduler/scheduler_config.json")
        vdm_vae = require_json(parts, "vae/config.json")
        require_json(parts, "text_encoder/config.json")
        idm_unet = require_json(image, "unet/config.json")
        require_json(image, "text_encoder/config.json")
        idm_scheduler = image.read_json("scheduler/scheduler_config.json")
        check_pair(
            idm_unet=idm_unet,
            vdm_unet=vdm_unet,
            vdm_scheduler=vdm_scheduler,
            idm_scheduler=idm_scheduler,
            vdm_vae=vdm_vae,
            idm_vae=image.read_json("vae/config.json"),
            idm_name=f"image model {image.source}",
            vdm_name=f"video model {unet_at.source}",
        )
        self.scheduler_config = vdm_scheduler
        self.latent_channels = int(vdm_unet["in_channels"])
        self.vae_scale_factor = 2 ** (len(vdm_vae["block_out_channels"]) - 1)
        return vdm_unet, vdm_scheduler, idm_unet, idm_scheduler

    def _plan(self, subfolders: dict[str, tuple[str, ...]], requested: dict[str, str | None]) -> dict[str, str | None]:
        """The weight variant of each model (see :func:`~ivmixed.backbones._diffusers.plan_weights`), before anything loads."""
        return {
            option: plan_weights(
                self.locations[option], folders, requested.get(option), dtype=self.dtype, allow_pickle=self.allow_pickle
            )
            for option, folders in subfolders.items()
        }

    def _kwargs(self, option: str) -> dict[str, Any]:
        return load_kwargs(
            self.dtype, allow_pickle=self.allow_pickle, variant=self.variants.get(option), location=self.locations[option]
        )

    def _load(self) -> None:
        from diffusers.utils import logging as diffusers_logging

        try:
            from diffusers import TextToVideoSDPipeline
        except ImportError as exc:  # pragma: no cover - removed from a future diffusers
            raise ImportError(f"this diffusers has no TextToVideoSDPipeline, which the modelscope backbone needs: {exc}") from exc

        video, image = self.locations["model"], self.locations["image_model"]
        logger.info("loading model=%s, image_model=%s on %s", video.describe(), image.describe(), self.device)
        kwargs = self._kwargs("model")
        verbosity = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()  # the pipeline class warns that it is deprecated; we only borrow its loader
        try:
            pipe = TextToVideoSDPipeline.from_pretrained(video.path, **kwargs)
        except (OSError, ValueError) as exc:
            raise explain_load_error(exc, video, allow_pickle=self.allow_pickle) from exc
        finally:
            diffusers_logging.set_verbosity(verbosity)
        self.unet, self.vae, self.text_encoder, self.tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
        del pipe

        self._load_image_pipeline()
        to_device(self.unet, self.vae, self.text_encoder, self.image_unet, self.image_text_encoder, device=self.device)

    def _load_image_pipeline(self) -> None:
        """The IDM with its own text encoder and tokenizer, from an SD-layout pipeline folder, with its LoRAs."""
        import transformers
        from diffusers import UNet2DConditionModel

        image = self.locations["image_model"]
        kwargs = self._kwargs("image_model")
        text_class_name = ((image.read_json("text_encoder/config.json") or {}).get("architectures") or ["CLIPTextModel"])[0]
        text_class = getattr(transformers, text_class_name, transformers.CLIPTextModel)
        try:
            self.image_unet = UNet2DConditionModel.from_pretrained(image.path, subfolder="unet", **kwargs)
            self.image_text_encoder = text_class.from_pretrained(image.path, subfolder="text_encoder", **kwargs)
            self.image_tokenizer = transformers.AutoTokenizer.from_pretrained(image.path, subfolder="tokenizer")
        except (OSError, ValueError) as exc:
            raise explain_load_error(exc, image, allow_pickle=self.allow_pickle) from exc
        apply_loras(self.image_unet, self.loras, allow_pickle=self.allow_pickle)

    def encode(self, prompts: list[str], negative_prompts: list[str]) -> Conditioning:
        # each model reads its own text encoder's embeddings, as in the released code
        return Conditioning(
            idm=encode_prompt_pair(self.image_tokenizer, self.image_text_encoder, prompts, negative_prompts, self.device),
            vdm=encode_prompt_pair(self.tokenizer, self.text_encoder, prompts, negative_prompts, self.device),
            prompts=list(prompts),
            negative_prompts=list(negative_prompts),
        )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "image_latent_size": list(self.image_latent_size) if self.image_latent_size else None}
