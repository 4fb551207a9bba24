"""The ``animatediff`` backbone: AnimateDiff (SD1.5 base + motion adapter) as the VDM, an SD1.5 UNet as the IDM.

Built on the kit's template (:class:`~ivmixed.backbones.diffusers.DiffusersBackbone`): find every model, check
the pair from configs (latent channels, ᾱ table, text-embedding width), choose the weight files, load. As in
the released code, the IDM is conditioned on the *video* model's text embeddings and its latents are decoded
by the video model's VAE; only the IDM's UNet is loaded.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

import torch

from .animatediff import DEFAULT_IMAGE_MODEL, DEFAULT_MODEL, DEFAULT_MOTION_ADAPTER, DEFAULTS, SPEC
from .diffusers import DiffusersBackbone, Location, ModelRequest, PairConfigs, dtype_keyword, peek_json, require_json

__all__ = ["AnimateDiffBackbone", "DEFAULTS"]

logger = logging.getLogger(__name__)


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

    name = SPEC.name
    defaults = SPEC.defaults
    standard_step_on_frames = False
    video_cond_per_frame = True  # UNetMotionModel takes one embedding row per frame (diffusers >= 0.31)
    #: what a subclass for another base family (``animatediff-sdxl``) changes: the family and its UNets in messages,
    #: the saved pipeline class, the base's folders that load, the default adapter and image model
    family = "AnimateDiff"
    unet_kind = "SD1.5"
    adapter_label = "motion adapter"
    pipeline_class_name = "AnimateDiffPipeline"
    base_folders: tuple[str, ...] = ("unet", "text_encoder")
    default_motion_adapter = DEFAULT_MOTION_ADAPTER
    default_image_model = DEFAULT_IMAGE_MODEL
    #: ``preset="reference"`` decodes as the released AnimateDiff pipeline does (:meth:`decode_released`)
    released_decode = True

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        motion_adapter: str | None = None,
        image_model: str | None = DEFAULT_IMAGE_MODEL,
        image_model_config: str | None = None,
        vae: str | None = None,
        variant: str | None = None,
        image_variant: str | None = None,
        motion_adapter_variant: str | None = None,
        revision: str | None = None,
        motion_adapter_revision: str | None = None,
        image_model_revision: str | None = None,
        vae_revision: str | None = None,
        **loader: Any,
    ):
        self.models = {"model": model, "motion_adapter": motion_adapter, "image_model": image_model, "image_model_config": image_model_config, "vae": vae}
        self.revisions = {"model": revision, "motion_adapter": motion_adapter_revision, "image_model": image_model_revision, "vae": vae_revision}
        super().__init__(variants={"model": variant, "motion_adapter": motion_adapter_variant, "image_model": image_variant}, **loader)

    # -- the template's hooks ---------------------------------------------------------------------------

    def requests(self) -> list[ModelRequest]:
        models, revisions = self.models, self.revisions
        model, image_model, image_revision = models["model"], models["image_model"], revisions["image_model"]
        index = peek_json(model, "model_index.json", revisions["model"]) or {}
        is_pipeline = index.get("_class_name") == self.pipeline_class_name
        if image_model is None:  # the base's own UNet at the base's revision; beside a saved pipeline, the default image model
            image_model, image_revision = (self.default_image_model, image_revision) if is_pipeline else (model, image_revision or revisions["model"])
        requests = [
            ModelRequest("model", model, f"video model ({self.unet_kind} base or saved {self.pipeline_class_name})", revision=revisions["model"])
        ]
        if models["motion_adapter"] is not None or not is_pipeline:
            adapter = models["motion_adapter"] or self.default_motion_adapter
            requests.append(ModelRequest("motion_adapter", adapter, self.adapter_label, ("config.json",), revision=revisions["motion_adapter"]))
        requests.append(
            ModelRequest(
                "image_model",
                image_model,
                f"image model ({self.unet_kind} UNet)",
                ("unet/config.json", "config.json"),
                single_file=True,
                revision=image_revision,
            )
        )
        image_model_config = models["image_model_config"]
        image_is_file = os.path.isfile(os.path.expanduser(str(image_model)))
        base_unet = peek_json(model, "unet/config.json", revisions["model"]) or {}
        if image_is_file and image_model_config is None and base_unet.get("_class_name") != "UNet2DConditionModel":
            image_model_config = self.default_image_model  # a saved pipeline's UNet config is the motion UNet's
        if image_is_file and image_model_config is not None:
            requests.append(ModelRequest("image_model_config", image_model_config, "image model config", ("unet/config.json", "config.json")))
        if models["vae"] is not None:
            requests.append(ModelRequest("vae", models["vae"], "VAE", ("config.json", "vae/config.json"), revision=revisions["vae"]))
        return requests

    def find(self) -> dict[str, Location]:
        found = super().find()
        if self.models["motion_adapter"] is None and "motion_adapter" in found:
            # a hub pipeline folder that was not cached: only now is its model_index.json readable
            if (found["model"].read_json("model_index.json") or {}).get("_class_name") == self.pipeline_class_name:
                del found["motion_adapter"]
        return found

    def read_configs(self) -> PairConfigs:
        video = self.locations["model"]
        vdm_unet = require_json(video, "unet/config.json")
        text = require_json(video, "text_encoder/config.json")
        self.read_motion_config(vdm_unet)
        idm_unet, idm_scheduler, _ = self.image_configs()
        # the image model reads the video model's CLIP embeddings, so their widths must agree
        return PairConfigs(vdm_unet, self.video_scheduler_config(), self.vae_config(), idm_unet, idm_scheduler, idm_text_dim=text.get("hidden_size"))

    def video_scheduler_config(self) -> dict[str, Any]:
        return require_json(self.locations["model"], "scheduler/scheduler_config.json")

    def vae_config(self) -> dict[str, Any]:
        loc = self.locations
        return require_json(loc["vae"], "config.json", "vae/config.json") if "vae" in loc else require_json(loc["model"], "vae/config.json")

    def read_motion_config(self, vdm_unet: dict[str, Any]) -> dict[str, Any] | None:
        """The motion adapter's config (None with a saved pipeline); sets :attr:`max_frames`, the motion module's positional slots."""
        loc = self.locations
        adapter = require_json(loc["motion_adapter"], "config.json") if "motion_adapter" in loc else None
        self.max_frames = int((adapter or vdm_unet).get("motion_max_seq_length", 32))
        return adapter

    def image_configs(self) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
        """The image model's UNet, scheduler and VAE configs (a single file has only a UNet config, from :attr:`image_config`)."""
        loc = self.locations
        image = loc["image_model"]
        if image.kind == "file":
            self.image_config = loc.get("image_model_config", loc["model"])
            logger.info("single-file image model: UNet config from %s; noise table assumed equal to the video model's", self.image_config.source)
            return require_json(self.image_config, "unet/config.json", "config.json"), None, None
        return require_json(image, "unet/config.json", "config.json"), image.read_json("scheduler/scheduler_config.json"), image.read_json("vae/config.json")

    def weight_folders(self) -> dict[str, tuple[str, ...]]:
        loc = self.locations
        folders = {"model": self.base_folders + (() if "vae" in loc else ("vae",))}
        if "motion_adapter" in loc:
            folders["motion_adapter"] = ("",)
        if "vae" in loc:
            folders["vae"] = ("vae",) if loc["vae"].read_json("config.json") is None else ("",)
        image = loc["image_model"]
        if image.kind != "file":
            folders["image_model"] = ("unet",) if image.read_json("unet/config.json") is not None else ("",)
        return folders

    def load(self) -> None:
        import diffusers
        from diffusers import AutoencoderKL

        loc = self.locations
        parts: dict[str, Any] = {"feature_extractor": None, "image_encoder": None}
        with self.loading("model") as kwargs:  # a failed adapter or VAE load is explained naming the video model
            parts.update(self.motion_parts(kwargs))
            if "vae" in loc:
                sub = "vae" if loc["vae"].read_json("config.json") is None else None
                parts["vae"] = AutoencoderKL.from_pretrained(loc["vae"].path, subfolder=sub, **self.load_kwargs("vae"))
            pipe = getattr(diffusers, self.pipeline_class_name).from_pretrained(loc["model"].path, **parts, **kwargs)
        self.pipeline_loaded(pipe)
        self.unet, self.vae, self.text_encoder, self.tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
        del pipe, parts  # the adapter's weights now live inside the motion UNet
        self.load_image_unet()

    def load_image_unet(self) -> None:
        """The IDM's UNet: from a pipeline or UNet folder, or one file with the UNet config of :attr:`image_config`."""
        from diffusers import UNet2DConditionModel

        image = self.locations["image_model"]
        with self.loading("image_model") as kwargs:
            if image.kind == "file":
                source = self.image_config
                sub = "unet" if source.read_json("unet/config.json") is not None else None
                self.image_unet = UNet2DConditionModel.from_single_file(
                    image.path, config=source.path, subfolder=sub, local_files_only=source.kind != "hub", **{dtype_keyword(): self.dtype}
                )
            else:
                sub = "unet" if image.read_json("unet/config.json") is not None else None
                self.image_unet = UNet2DConditionModel.from_pretrained(image.path, subfolder=sub, **kwargs)

    def motion_parts(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The modules handed to the pipeline besides the base's (``kwargs``: the video model's load keywords): the
        motion adapter, none with a saved pipeline, which has its own."""
        adapter = self.load_motion_adapter()
        return {} if adapter is None else {"motion_adapter": adapter}

    def load_motion_adapter(self):
        """The motion adapter added to the base (None with a saved pipeline, which has its own)."""
        from diffusers import MotionAdapter

        if "motion_adapter" not in self.locations:
            return None
        return MotionAdapter.from_pretrained(self.locations["motion_adapter"].path, **self.load_kwargs("motion_adapter"))

    def pipeline_loaded(self, pipe) -> None:
        """Called with the assembled pipeline before its modules are kept; nothing here (a subclass adds a LoRA)."""

    # -- the Backbone interface -------------------------------------------------------------------------

    def check_request(self, *, frames: int, height: int, width: int, steps: int) -> None:
        super().check_request(frames=frames, height=height, width=width, steps=steps)
        if frames > self.max_frames:
            raise ValueError(
                f"--frames {frames}: the motion module has {self.max_frames} positional slots, so {self.family} "
                f"generates at most {self.max_frames} frames"
            )

    def generate(self, prompt, *, preset: str | None = None, decode: bool = True, **kwargs: Any):
        """:meth:`Backbone.generate`; with ``preset="reference"`` the frames are decoded as the released pipeline does.

        That is: the VAE runs in float32 whatever the model dtype, and the decoded video is rounded to fp16
        before the post-processing to [0, 1] (reference-code-notes §1.1).
        """
        if preset != "reference" or not decode or not self.released_decode:
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
