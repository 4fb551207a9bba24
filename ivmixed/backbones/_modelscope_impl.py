"""The ``modelscope`` backbone: ModelScope text-to-video 1.7B as the VDM, a full SD1.5 pipeline as the IDM.

Unlike ``animatediff``, the IDM here has its own text encoder (SD1.5's CLIP-L; ModelScope's is 1024-wide
OpenCLIP-H), and it sees the frame latents resized (nearest) to its own sample size — 64×64 for SD1.5,
whatever the video size — as in the released code. ``image_latent_size`` changes that target; 0 turns the
resize off. Loading is the kit's template (:class:`~ivmixed.backbones.diffusers.DiffusersBackbone`).
"""

from __future__ import annotations

from typing import Any

from .diffusers import DiffusersBackbone, ModelRequest, PairConfigs, read_pipeline_configs
from .modelscope import DEFAULT_IMAGE_MODEL, DEFAULT_MODEL, DEFAULTS, SPEC

__all__ = ["ModelScopeBackbone", "DEFAULTS"]


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

    name = SPEC.name
    defaults = SPEC.defaults
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
        if image_latent_size is not None and (not isinstance(image_latent_size, int) or image_latent_size < 0):
            raise ValueError(f"--image-latent-size must be a non-negative integer (0: no resize), got {image_latent_size!r}")
        self.requested_latent_size = image_latent_size
        self.models = {"model": (model, revision), "image_model": (image_model, image_model_revision)}
        super().__init__(
            device=device,
            dtype=dtype,
            allow_pickle=allow_pickle,
            image_loras=image_loras,
            decode_chunk_size=decode_chunk_size,
            variants={"model": variant, "image_model": image_variant},
        )

    # -- the template's hooks ---------------------------------------------------------------------------

    def requests(self) -> list[ModelRequest]:
        (model, revision), (image_model, image_revision) = self.models["model"], self.models["image_model"]
        return [
            ModelRequest("model", model, "video model (TextToVideoSDPipeline)", revision=revision),
            ModelRequest("image_model", image_model, "image model (SD1.5 pipeline with its text encoder)", revision=image_revision),
        ]

    def read_configs(self) -> PairConfigs:
        video = self.locations["model"]
        configs = read_pipeline_configs(video, "unet/config.json", video, self.locations["image_model"])
        if self.requested_latent_size is None:
            size = configs.idm_unet.get("sample_size", 64)
            self.image_latent_size = tuple(size) if isinstance(size, (list, tuple)) else (int(size), int(size))
        else:
            size = self.requested_latent_size
            self.image_latent_size = None if size == 0 else (size, size)
        return configs

    def weight_folders(self) -> dict[str, tuple[str, ...]]:
        return {"model": ("unet", "vae", "text_encoder"), "image_model": ("unet", "text_encoder")}

    def load(self) -> None:
        from diffusers.utils import logging as diffusers_logging

        try:
            from diffusers import TextToVideoSDPipeline
        except ImportError as exc:  # pragma: no cover - removed from a future diffusers
            raise ImportError(f"this diffusers has no TextToVideoSDPipeline, which the modelscope backbone needs: {exc}") from exc

        verbosity = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()  # the pipeline class warns that it is deprecated; we only borrow its loader
        try:
            with self.loading("model") as kwargs:
                pipe = TextToVideoSDPipeline.from_pretrained(self.locations["model"].path, **kwargs)
        finally:
            diffusers_logging.set_verbosity(verbosity)
        self.unet, self.vae, self.text_encoder, self.tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
        del pipe
        self.load_image_pipeline()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "image_latent_size": list(self.image_latent_size) if self.image_latent_size else None}

