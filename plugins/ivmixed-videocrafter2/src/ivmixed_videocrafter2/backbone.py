"""The ``videocrafter2`` backbone: VideoCrafter2 as the VDM, an SD1.5-architecture pipeline as the IDM.

Built on ivmixed's public backbone kit (:mod:`ivmixed.backbones.diffusers`): locating weights, the latent-space
check, loading with safetensors, LoRA on the image model, prompt encoding and decoding all come from there.
What is VideoCrafter2's own:

- the video UNet is :class:`~ivmixed_videocrafter2.unet.VideoCrafter2UNet` (fps conditioning, ``fps=24``
  by default as in the released runs, passed with each prompt's conditioning), loaded from its own repository,
  while the text encoder, tokenizer, VAE and scheduler config come from a zeroscope-layout pipeline (``components``);
- the image model has its own text encoder, as ModelScope's does, and runs at the video latent size (no resize);
- the standard step is SDE-DPM-Solver++ (second order, multistep), stepped on frames (B·F, C, h, w) with
  the run's generator; its history carries across steps while the zigzag changes the latent in between,
  as in the released code; the zigzag sub-steps are DDIM moves on the same ᾱ table;
- ω = 9 and the default program ``IV-IV+VV-VV@i%3=2`` (the released ``zz = 3`` rule), declared in :mod:`.spec`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ivmixed.backbones.base import Conditioning
from ivmixed.backbones.diffusers import (
    DiffusersBackbone,
    ModelRequest,
    PairConfigs,
    UNetCond,
    ddim_scheduler,
    load_text_encoder,
    read_pipeline_configs,
)
from ivmixed.steps import NoiseSchedule

from .spec import DEFAULT_COMPONENTS, DEFAULT_IMAGE_MODEL, DEFAULT_MODEL, DEFAULTS, PINNED_REVISIONS, RECIPE, SPEC
from .unet import DEFAULT_FPS

__all__ = ["VideoCrafter2Backbone", "DEFAULTS", "RECIPE"]

#: the released standard step: ``DPMSolverMultistepScheduler.from_config(zeroscope, algorithm_type="sde-dpmsolver++")``
DPM_OVERRIDES = {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}


class VideoCrafter2Backbone(DiffusersBackbone):
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

    name = SPEC.name
    defaults = SPEC.defaults
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
        if not isinstance(fps, (int, float)) or fps <= 0:
            raise ValueError(f"fps (the frame rate VideoCrafter2 is conditioned on) must be a positive number, got {fps!r}")
        self.fps_condition = fps

        def pinned(value: str, given: str | None) -> str | None:
            return given if given is not None else PINNED_REVISIONS.get(str(value))

        self.models = {
            "model": (model, pinned(model, revision)),
            "components": (components, pinned(components, components_revision)),
            "image_model": (image_model, pinned(image_model, image_model_revision)),
        }
        super().__init__(
            device=device,
            dtype=dtype,
            allow_pickle=allow_pickle,
            image_loras=image_loras,
            decode_chunk_size=decode_chunk_size,
            variants={"model": variant, "components": components_variant, "image_model": image_variant},
        )

    # -- the kit's hooks --------------------------------------------------------------------------------

    def requests(self) -> list[ModelRequest]:
        (model, revision), (components, components_revision), (image, image_revision) = self.models.values()
        return [
            ModelRequest("model", model, "VideoCrafter2 UNet", markers=("config.json", "unet/config.json"), revision=revision),
            ModelRequest("components", components, "text encoder, tokenizer and VAE (zeroscope-layout pipeline)", revision=components_revision),
            ModelRequest("image_model", image, "image model (SD1.5-architecture pipeline with its text encoder)", revision=image_revision),
        ]

    def read_configs(self) -> PairConfigs:
        unet_at, parts = self.locations["model"], self.locations["components"]
        self.unet_subfolder = "unet" if unet_at.read_json("unet/config.json") is not None else None
        unet_config = "unet/config.json" if self.unet_subfolder else "config.json"
        configs = read_pipeline_configs(unet_at, unet_config, parts, self.locations["image_model"])
        if configs.vdm_scheduler.get("prediction_type", "epsilon") != "epsilon":
            raise ValueError(
                f"the scheduler of {parts.source} says prediction_type={configs.vdm_scheduler['prediction_type']!r}; "
                "VideoCrafter2 predicts epsilon — is this a zeroscope-layout pipeline?"
            )
        return configs

    def weight_folders(self) -> dict[str, tuple[str, ...]]:
        return {"model": (self.unet_subfolder or "",), "components": ("vae", "text_encoder"), "image_model": ("unet", "text_encoder")}

    def load(self) -> None:
        from diffusers import AutoencoderKL

        from .unet import VideoCrafter2UNet

        with self.loading("model") as kwargs:
            self.unet = VideoCrafter2UNet.from_pretrained(self.locations["model"].path, subfolder=self.unet_subfolder, **kwargs)
        parts = self.locations["components"]
        with self.loading("components") as kwargs:
            self.vae = AutoencoderKL.from_pretrained(parts.path, subfolder="vae", **kwargs)
            self.text_encoder, self.tokenizer = load_text_encoder(parts, **kwargs)
        self.load_image_pipeline()

    # -- the Backbone interface -------------------------------------------------------------------------

    def encode(self, prompts: list[str], negative_prompts: list[str]) -> Conditioning:
        # each model reads its own text encoder's embeddings; the video UNet also reads the frame rate
        conditioning = super().encode(prompts, negative_prompts)
        return dataclasses.replace(conditioning, vdm=UNetCond(conditioning.vdm, extra={"fps": self.fps_condition}))

    def make_scheduler(self):
        from diffusers import DPMSolverMultistepScheduler

        return DPMSolverMultistepScheduler.from_config(dict(self.scheduler_config), **DPM_OVERRIDES)

    def zigzag_schedule(self) -> NoiseSchedule:
        # DDIM moves on the standard scheduler's ᾱ table, with DDIM's level-below-0 convention
        return NoiseSchedule.from_scheduler(ddim_scheduler(self.scheduler_config))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "fps_condition": self.fps_condition}
