"""The ``animatediff`` backbone: AnimateDiff (SD1.5 base + motion adapter) as the VDM, an SD1.5 UNet as the IDM.

Loading goes in three stages so that a bad request fails before anything heavy happens:

1. find every model (:func:`~ivmixed.backbones._diffusers.resolve_models`; one error names all missing ones);
2. read their configs and check the pair can be mixed (latent channels, ᾱ table, text-embedding width);
3. choose each model's weight files from what it publishes (:func:`~ivmixed.backbones._diffusers.plan_weights`:
   fp16 on CUDA where a repository has them, each model on its own; pickles refused unless ``allow_pickle``);
4. load the weights and move them to the device.

As in the released code, the IDM is conditioned on the *video* model's text embeddings and its latents
are decoded by the video model's VAE; only the IDM's UNet is loaded.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

import torch

from ..guidance import ImageOnVideo
from ..schedules import released_guidance
from ..steps import NoiseSchedule
from ._diffusers import (
    DDIM_OVERRIDES,
    DiffusersBackbone,
    Location,
    ModelRequest,
    UNetScore,
    apply_loras,
    check_pair,
    dtype_keyword,
    encode_prompt_pair,
    explain_load_error,
    load_kwargs,
    parse_loras,
    peek_json,
    plan_weights,
    resolve_device,
    resolve_dtype,
    require_json,
    resolve_models,
    to_device,
)
from .animatediff import DEFAULT_IMAGE_MODEL, DEFAULT_MODEL, DEFAULT_MOTION_ADAPTER
from .base import Conditioning, Defaults, Preset

__all__ = ["AnimateDiffBackbone", "DEFAULTS"]

logger = logging.getLogger(__name__)

REFERENCE = Preset(
    program="IV-IV:ad",
    guidance=7.5,
    zigzag=released_guidance(),
    description="what the released AnimateDiff IV-mixed pipeline computes: IV-IV on every step with its first two "
    "sub-steps swapped (I at t−Δ → t−2Δ, then V at t → t−Δ; then I⁻¹ at t−2Δ, V⁻¹ at t−Δ; Δ = T // N), zigzag "
    "guidance ±4.000000953674316 (its float32 Karras ramp), ω 7.5. The default IV-IV runs the level-consistent "
    "order t → t−Δ → t−2Δ instead",
)

DEFAULTS = Defaults(height=512, width=512, frames=16, steps=50, guidance=7.5, program="IV-IV", fps=8, presets={"reference": REFERENCE})


class AnimateDiffBackbone(DiffusersBackbone):
    """AnimateDiff + SD1.5, loaded once; call :meth:`generate` as often as you like.

    Args:
        model: the video model: an SD1.5-architecture base (diffusers folder or hub id) to which the motion
            adapter is added, or a saved ``AnimateDiffPipeline`` folder (then no adapter is needed).
        motion_adapter: motion adapter folder or hub id (default: AnimateDiff v1-5-3; not used with a saved
            ``AnimateDiffPipeline`` unless given explicitly).
        image_model: the IDM's UNet: an SD pipeline folder or hub id (its ``unet/``), a UNet folder, or one
            ``.safetensors`` file (diffusers or original/civitai key names).
        image_model_config: where a single-file image model's UNet config comes from (a folder or hub id);
            default: the video base's UNet config when it is an SD1.5 folder, else ``stable-diffusion-v1-5``.
        vae: another VAE for decoding (folder or hub id), e.g. ``stabilityai/sd-vae-ft-mse``.
        image_loras: LoRA files for the IDM, ``"FILE[:SCALE]"`` each (diffusers, peft or kohya/civitai).
        device: ``cpu``, ``cuda``, ``cuda:1`` …; default CUDA when available.
        dtype: ``fp32``, ``fp16`` or ``bf16``; default fp16 on CUDA, fp32 on the CPU.
        allow_pickle: also load pickled (``.bin``/``.ckpt``) weights. Off by default: pickles can run code.
        revision, motion_adapter_revision, image_model_revision, vae_revision: hub revisions (branch, tag,
            commit or ``refs/pr/N``) of the base, the adapter, the image model and the VAE; default main.
        variant, motion_adapter_variant, image_variant: weight variant of the base, the adapter and the
            image model, each chosen on its own: default ``fp16`` under fp16 (the CUDA default) where that
            model publishes fp16 files (Realistic Vision V5.1 does not, the adapter does), else the plain
            files; ``none`` forces the plain files.
        decode_chunk_size: frames decoded by the VAE at a time.
    """

    name = "animatediff"
    defaults = DEFAULTS
    standard_step_on_frames = False

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        motion_adapter: str | None = None,
        image_model: str = DEFAULT_IMAGE_MODEL,
        image_model_config: str | None = None,
        vae: str | None = None,
        image_loras: list[Any] | None = None,
        device: str | None = None,
        dtype: str | None = None,
        allow_pickle: bool = False,
        variant: str | None = None,
        image_variant: str | None = None,
        motion_adapter_variant: str | None = None,
        revision: str | None = None,
        motion_adapter_revision: str | None = None,
        image_model_revision: str | None = None,
        vae_revision: str | None = None,
        decode_chunk_size: int = 16,
    ):
        # 0. arguments that need no file
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.loras = parse_loras(image_loras, allow_pickle=allow_pickle)
        self.decode_chunk_size = int(decode_chunk_size)
        self.allow_pickle = allow_pickle

        # 1. find every model, no network when cached
        revisions = {"model": revision, "motion_adapter": motion_adapter_revision, "image_model": image_model_revision, "vae": vae_revision}
        self.locations = self._find(model, motion_adapter, image_model, image_model_config, vae, allow_pickle, revisions)
        video = self.locations["model"]

        # 2. configs only: check the pair before any weight loads
        configs = self._read_configs()
        check_pair(
            idm_unet=configs["idm_unet"],
            vdm_unet=configs["vdm_unet"],
            vdm_scheduler=configs["vdm_scheduler"],
            idm_scheduler=configs["idm_scheduler"],
            idm_text_dim=configs["text_dim"],
            idm_name=f"image model {self.locations['image_model'].source}",
            vdm_name=f"video model {video.source}",
        )
        self.scheduler_config = configs["vdm_scheduler"]
        self.latent_channels = int(configs["vdm_unet"]["in_channels"])
        self.vae_scale_factor = 2 ** (len(configs["vae"]["block_out_channels"]) - 1)
        self.max_frames = int(configs["max_frames"])
        prediction = self.scheduler_config.get("prediction_type", "epsilon")
        image_prediction = (configs["idm_scheduler"] or {}).get("prediction_type", "epsilon")
        if prediction != "epsilon":  # the adapter converts to ε, so the standard step must read ε too
            self.scheduler_overrides = {**DDIM_OVERRIDES, "prediction_type": "epsilon"}

        # 3. which weight files: variants and the pickle check, still before any weight loads
        self.variants = self._plan({"model": variant, "motion_adapter": motion_adapter_variant, "image_model": image_variant})

        # 4. weights
        self._load()
        schedule = NoiseSchedule.from_scheduler(self.make_scheduler())
        self.vdm = UNetScore(self.unet, schedule=schedule, prediction_type=prediction, repeat_cond=True)
        self.idm = ImageOnVideo(UNetScore(self.image_unet, schedule=schedule, prediction_type=image_prediction, repeat_cond=True))

    # -- loading ----------------------------------------------------------------------------------------

    def _find(self, model, motion_adapter, image_model, image_model_config, vae, allow_pickle, revisions) -> dict[str, Location]:
        index = peek_json(model, "model_index.json", revisions["model"]) or {}
        is_pipeline = index.get("_class_name") == "AnimateDiffPipeline"
        requests = [ModelRequest("model", model, "video model (SD1.5 base or saved AnimateDiffPipeline)", revision=revisions["model"])]
        if motion_adapter is not None or not is_pipeline:
            requests.append(
                ModelRequest(
                    "motion_adapter",
                    motion_adapter or DEFAULT_MOTION_ADAPTER,
                    "motion adapter",
                    ("config.json",),
                    revision=revisions["motion_adapter"],
                )
            )
        requests.append(
            ModelRequest(
                "image_model",
                image_model,
                "image model (SD1.5 UNet)",
                ("unet/config.json", "config.json"),
                single_file=True,
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
        found = resolve_models(self.name, requests, allow_pickle=allow_pickle)
        if motion_adapter is None and "motion_adapter" in found:
            # a hub AnimateDiffPipeline that was not cached: only now is its model_index.json readable
            if (found["model"].read_json("model_index.json") or {}).get("_class_name") == "AnimateDiffPipeline":
                del found["motion_adapter"]
        return found

    def _read_configs(self) -> dict[str, Any]:
        loc = self.locations
        video = loc["model"]
        index = video.read_json("model_index.json") or {}
        self._is_pipeline = index.get("_class_name") == "AnimateDiffPipeline"
        vdm_unet = require_json(video, "unet/config.json")
        text = require_json(video, "text_encoder/config.json")
        vdm_scheduler = require_json(video, "scheduler/scheduler_config.json")
        vae = require_json(loc["vae"], "config.json", "vae/config.json") if "vae" in loc else require_json(video, "vae/config.json")
        if "motion_adapter" in loc:
            max_frames = require_json(loc["motion_adapter"], "config.json").get("motion_max_seq_length", 32)
        else:
            max_frames = vdm_unet.get("motion_max_seq_length", 32)

        image = loc["image_model"]
        if image.kind == "file":
            source = loc.get("image_model_config", video)
            idm_unet = require_json(source, "unet/config.json", "config.json")
            self._image_config = source
            idm_scheduler = None
            logger.info("single-file image model: UNet config from %s; noise table assumed equal to the video model's", source.source)
        else:
            idm_unet = require_json(image, "unet/config.json", "config.json")
            idm_scheduler = image.read_json("scheduler/scheduler_config.json")
        return {
            "vdm_unet": vdm_unet,
            "text_dim": text.get("hidden_size"),
            "vdm_scheduler": vdm_scheduler,
            "vae": vae,
            "max_frames": max_frames,
            "idm_unet": idm_unet,
            "idm_scheduler": idm_scheduler,
        }

    def _subfolders(self) -> dict[str, tuple[str, ...]]:
        """The component folders each model loads (``""``: the model's root)."""
        loc = self.locations
        folders = {"model": ("unet", "text_encoder") + (() if "vae" in loc else ("vae",))}
        if "motion_adapter" in loc:
            folders["motion_adapter"] = ("",)
        if "vae" in loc:
            folders["vae"] = ("vae",) if loc["vae"].read_json("config.json") is None else ("",)
        image = loc["image_model"]
        if image.kind != "file":
            folders["image_model"] = ("unet",) if image.read_json("unet/config.json") is not None else ("",)
        return folders

    def _plan(self, requested: dict[str, str | None]) -> dict[str, str | None]:
        return {
            option: plan_weights(
                self.locations[option], subfolders, requested.get(option), dtype=self.dtype, allow_pickle=self.allow_pickle
            )
            for option, subfolders in self._subfolders().items()
        }

    def _load(self) -> None:
        from diffusers import AnimateDiffPipeline, AutoencoderKL, MotionAdapter, UNet2DConditionModel

        loc = self.locations

        def kwargs(option: str) -> dict[str, Any]:
            return load_kwargs(self.dtype, allow_pickle=self.allow_pickle, variant=self.variants.get(option), location=loc[option])

        logger.info("loading %s on %s", ", ".join(f"{k}={v.describe()}" for k, v in loc.items()), self.device)
        parts: dict[str, Any] = {"feature_extractor": None, "image_encoder": None}
        try:
            if "motion_adapter" in loc:
                parts["motion_adapter"] = MotionAdapter.from_pretrained(loc["motion_adapter"].path, **kwargs("motion_adapter"))
            if "vae" in loc:
                vae_loc = loc["vae"]
                sub = "vae" if vae_loc.read_json("config.json") is None else None
                parts["vae"] = AutoencoderKL.from_pretrained(vae_loc.path, subfolder=sub, **kwargs("vae"))
            pipe = AnimateDiffPipeline.from_pretrained(loc["model"].path, **parts, **kwargs("model"))
        except (OSError, ValueError) as exc:
            raise explain_load_error(exc, loc["model"], allow_pickle=self.allow_pickle) from exc
        self.unet, self.vae, self.text_encoder, self.tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
        del pipe, parts  # the adapter's weights now live inside the motion UNet

        image = loc["image_model"]
        try:
            if image.kind == "file":
                source = self._image_config
                sub = "unet" if source.read_json("unet/config.json") is not None else None
                self.image_unet = UNet2DConditionModel.from_single_file(
                    image.path, config=source.path, subfolder=sub, local_files_only=source.kind != "hub", **{dtype_keyword(): self.dtype}
                )
            else:
                sub = "unet" if image.read_json("unet/config.json") is not None else None
                self.image_unet = UNet2DConditionModel.from_pretrained(image.path, subfolder=sub, **kwargs("image_model"))
        except (OSError, ValueError) as exc:
            raise explain_load_error(exc, image, allow_pickle=self.allow_pickle) from exc
        apply_loras(self.image_unet, self.loras, allow_pickle=self.allow_pickle)
        to_device(self.unet, self.vae, self.text_encoder, self.image_unet, device=self.device)

    # -- the Backbone interface -------------------------------------------------------------------------

    def check_request(self, *, frames: int, height: int, width: int, steps: int) -> None:
        super().check_request(frames=frames, height=height, width=width, steps=steps)
        if frames > self.max_frames:
            raise ValueError(
                f"--frames {frames}: the motion module has {self.max_frames} positional slots, so AnimateDiff "
                f"generates at most {self.max_frames} frames"
            )

    def encode(self, prompts: list[str], negative_prompts: list[str]) -> Conditioning:
        embeds = encode_prompt_pair(self.tokenizer, self.text_encoder, prompts, negative_prompts, self.device)
        # the IDM reads the video model's CLIP embeddings, as in the released code
        return Conditioning(idm=embeds, vdm=embeds, prompts=list(prompts), negative_prompts=list(negative_prompts))

    def generate(self, prompt, *, preset: str | None = None, decode: bool = True, **kwargs: Any):
        """:meth:`Backbone.generate`; with ``preset="reference"`` the frames are decoded as the released pipeline does.

        That is: the VAE runs in float32 whatever the model dtype, and the decoded video is rounded to fp16
        before the post-processing to [0, 1] (reference-code-notes §1.1).
        """
        if preset != "reference" or not decode:
            return super().generate(prompt, preset=preset, decode=decode, **kwargs)
        video = super().generate(prompt, preset=preset, decode=False, **kwargs)
        started = time.perf_counter()
        frames = self.decode_released(video.latents).numpy()
        decode_s = time.perf_counter() - started
        timings = dict(video.timings, decode_s=round(decode_s, 4), total_s=round(video.timings["total_s"] + decode_s, 4))
        return dataclasses.replace(video, frames=frames, timings=timings)

    def decode_released(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> frames ``(B, F, H, W, 3)`` float32 in [0, 1] on the CPU, as the released AnimateDiff IV pipeline decodes.

        ``decode_latents(latents.float())`` with the VAE cast to float32, the video cast to fp16, then diffusers'
        ``VideoProcessor`` post-processing. The VAE goes back to its dtype afterwards.
        """
        from diffusers.video_processor import VideoProcessor

        from ..steps import fold_frames, unfold_frames

        dtype = self.vae.dtype
        if dtype != torch.float32:
            self.vae.to(torch.float32)
        try:
            images = fold_frames(1 / self.vae.config.scaling_factor * latents.float())
            chunk = max(1, self.decode_chunk_size)
            with torch.no_grad():
                decoded = torch.cat([self.vae.decode(images[i : i + chunk]).sample for i in range(0, images.shape[0], chunk)])
        finally:
            if dtype != torch.float32:
                self.vae.to(dtype)
        video = unfold_frames(decoded, latents.shape[2]).float().half()  # (B, 3, F, H, W), rounded to fp16
        frames = VideoProcessor(do_resize=False).postprocess_video(video, output_type="pt")  # (B, F, 3, H, W)
        return frames.permute(0, 1, 3, 4, 2).contiguous().cpu().float()
