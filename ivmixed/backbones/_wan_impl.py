"""The ``wan`` backbone: Wan 2.1 text-to-video (rectified flow) through the components of diffusers' ``WanPipeline``.

Wan predicts the flow velocity v = ε − x0 on x = (1 − σ)·x0 + σ·ε. The standard step is the pipeline's own
scheduler (UniPC on shifted flow sigmas in the released configs), fed the guided velocity exactly as
``WanPipeline`` does; the zigzag sub-steps walk the :class:`~ivmixed.steps.FlowSchedule` of that scheduler
(same T and shift) with the Euler step and its inversion. Prompt encoding, initial noise and decoding are the
pipeline's own methods on the loaded components, so ``origin`` is the stock pipeline.

Memory: the components stay in one ``WanPipeline`` object, so diffusers' offloading applies as it does to the
stock pipeline (``offload="model"``: ``enable_model_cpu_offload``; ``offload="group"``: ``enable_group_offload``
with one transformer block per group on the compute device at a time).

An image model (experimental) must share Wan's latent space: :mod:`ivmixed.backbones._flow_image` loads
Qwen-Image, whose VAE is of the Wan 2.1 family, and checks the latent normalisation of both VAEs.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..checks import check_request
from ..steps import FlowSchedule
from .diffusers import (
    DiffusersBackbone,
    ModelRequest,
    explain_load_error,
    load_kwargs,
    require_json,
    resolve_device,
    resolve_dtype,
    resolve_models,
)
from .base import Conditioning, Defaults, IncompatibleModels
from .wan import DEFAULT_MODELS

__all__ = ["WanBackbone", "WanScore", "DEFAULTS", "OFFLOAD_MODES"]

logger = logging.getLogger(__name__)

#: the stock pipeline's defaults (480×832, 81 frames, 50 steps, guidance 5); the program is the stock one
DEFAULTS = Defaults(height=480, width=832, frames=81, steps=50, guidance=5.0, program="origin", fps=16)

OFFLOAD_MODES = ("none", "model", "group")

#: the scheduler configuration of the released Wan 2.1 T2V models, for plans made without their files
RELEASED_SCHEDULER = {
    "_class_name": "UniPCMultistepScheduler",
    "num_train_timesteps": 1000,
    "prediction_type": "flow_prediction",
    "use_flow_sigmas": True,
    "flow_shift": 3.0,
    "solver_order": 2,
}

#: Wan's VAE compresses time by this factor after the first frame
TEMPORAL_FACTOR = 4


class WanScore:
    """A Wan transformer as a score model ``v(x, t, cond)``: the flow velocity of latents ``(N, C, F', h, w)``.

    ``t`` is the network timestep σ·T (an int from the standard scheduler, a float inside a zigzag); ``cond``
    the UMT5 embeddings ``(N, L, D)`` of the doubled CFG batch. The latents are cast to the transformer's dtype
    and the output is returned in it, as ``WanPipeline`` does.
    """

    prediction_type = "flow_prediction"

    def __init__(self, transformer):
        self.transformer = transformer

    def __call__(self, x: torch.Tensor, t, cond: torch.Tensor) -> torch.Tensor:
        timestep = torch.as_tensor(t, device=x.device)
        if timestep.is_floating_point():
            timestep = timestep.to(torch.float32)
        with torch.no_grad():
            return self.transformer(
                hidden_states=x.to(self.transformer.dtype),
                timestep=timestep.expand(x.shape[0]),
                encoder_hidden_states=cond,
                return_dict=False,
            )[0]


class WanBackbone(DiffusersBackbone):
    """Wan 2.1 T2V, loaded once; call :meth:`generate` as often as you like.

    Args:
        model: a ``WanPipeline`` folder or hub id (default: the 1.3B model, or the 14B one with ``size="14B"``).
        size: ``"1.3B"`` or ``"14B"``: which released model ``model`` defaults to.
        image_model: experimental IDM, a ``QwenImagePipeline`` folder or hub id (default: none; programs that use
            the letter I then refuse to run).
        flow_shift: the time shift of the flow schedule (default: the scheduler config's, 3.0 in the released
            configs; Wan recommends 5.0 at 720p). It moves both the standard steps and the zigzag levels.
        device: ``cpu``, ``cuda``, ``cuda:1`` …; default CUDA when available (the compute device when offloading).
        dtype: ``fp32``, ``fp16`` or ``bf16`` for the transformer and text encoder; default bf16 on CUDA, fp32 on
            the CPU. The VAE stays in fp32, as Wan recommends.
        offload: ``none``, ``model`` (diffusers' model CPU offload: one whole model on the device at a time) or
            ``group`` (group offloading: transformer blocks move to the device one group at a time).
        max_sequence_length: UMT5 tokens per prompt (512 in the stock pipeline).
        allow_pickle: also load pickled (``.bin``) weights. Off by default: pickles can run code.
        variant: weight variant of the model files.
    """

    name = "wan"
    defaults = DEFAULTS
    vae_scale_factor = 16  # the VAE's 8 × the transformer's 2×2 patches: the multiple height and width need

    def __init__(
        self,
        *,
        model: str | None = None,
        size: str = "1.3B",
        image_model: str | None = None,
        flow_shift: float | None = None,
        device: str | None = None,
        dtype: str | None = None,
        offload: str = "none",
        max_sequence_length: int = 512,
        allow_pickle: bool = False,
        variant: str | None = None,
        image_variant: str | None = None,
    ):
        # 0. arguments that need no file
        if size not in DEFAULT_MODELS:
            raise ValueError(f"-o size={size!r}: Wan 2.1 comes in sizes {', '.join(DEFAULT_MODELS)}")
        if offload not in OFFLOAD_MODES:
            raise ValueError(f"-o offload={offload!r}: expected one of {', '.join(OFFLOAD_MODES)}")
        if flow_shift is not None and not (isinstance(flow_shift, (int, float)) and 0 < float(flow_shift) < float("inf")):
            raise ValueError(f"-o flow_shift={flow_shift!r}: expected a positive number (3.0 for 480p, 5.0 for 720p)")
        if not isinstance(max_sequence_length, int) or max_sequence_length < 1:
            raise ValueError(f"-o max_sequence_length={max_sequence_length!r}: expected a positive integer (512 in the stock pipeline)")
        self.device = resolve_device(device)
        if dtype is None and self.device.type == "cuda":
            dtype = "bf16"  # Wan's weights are trained in bf16; fp16 overflows in its attention
        self.dtype = resolve_dtype(dtype, self.device)
        self.offload = offload
        self.max_sequence_length = max_sequence_length
        self.allow_pickle = allow_pickle
        self.loras = []

        # 1. find the models, no network when cached
        requests = [ModelRequest("model", model or DEFAULT_MODELS[size], "video model (WanPipeline)")]
        if image_model is not None:
            requests.append(ModelRequest("image_model", image_model, "image model (QwenImagePipeline)"))
        self.locations = resolve_models(self.name, requests, allow_pickle=allow_pickle)
        video = self.locations["model"]

        # 2. configs only: a flow-matching model with its scheduler, and the pair check, before any weight loads
        transformer_config = require_json(video, "transformer/config.json")
        scheduler_config = require_json(video, "scheduler/scheduler_config.json")
        vae_config = require_json(video, "vae/config.json")
        require_json(video, "text_encoder/config.json")
        _check_flow_scheduler(scheduler_config, video.describe())
        self.scheduler_config = dict(scheduler_config)
        if flow_shift is not None:
            key = "flow_shift" if "flow_shift" in scheduler_config or scheduler_config.get("use_flow_sigmas") else "shift"
            self.scheduler_config[key] = float(flow_shift)
        self.latent_channels = int(transformer_config["in_channels"])
        self.vae_config = vae_config
        self.image = None
        if image_model is not None:
            from ._flow_image import QwenImageModel

            self.image = QwenImageModel.check(self.locations["image_model"], vae_config, self.latent_channels)

        # 3. weights
        self._load(variant)
        self.vdm = WanScore(self.transformer)
        if self.image is not None:
            self.image.load(self.dtype, allow_pickle=allow_pickle, variant=image_variant, device=self.device, offload=offload)
            self.idm = self.image.score_model()
        else:
            self.idm = None

    def _load(self, variant: str | None) -> None:
        from diffusers import AutoencoderKLWan, WanPipeline
        from diffusers.utils import logging as diffusers_logging

        video = self.locations["model"]
        logger.info("loading model=%s on %s (offload: %s)", video.describe(), self.device, self.offload)
        kwargs = load_kwargs(self.dtype, allow_pickle=self.allow_pickle, variant=variant)
        verbosity = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()  # "expected transformer_2" notices of the Wan 2.2 layout
        try:
            vae_kwargs = load_kwargs(torch.float32, allow_pickle=self.allow_pickle, variant=variant)  # the VAE stays fp32
            vae = AutoencoderKLWan.from_pretrained(video.path, subfolder="vae", **vae_kwargs)
            pipe = WanPipeline.from_pretrained(video.path, vae=vae, **kwargs)
        except (OSError, ValueError) as exc:
            raise explain_load_error(exc, video, allow_pickle=self.allow_pickle) from exc
        finally:
            diffusers_logging.set_verbosity(verbosity)
        if getattr(pipe, "transformer_2", None) is not None or pipe.config.get("boundary_ratio") is not None:
            raise IncompatibleModels(
                f"{video.describe()} is a Wan 2.2 two-expert pipeline; the wan backbone runs Wan 2.1 (one transformer)"
            )
        pipe.set_progress_bar_config(disable=True)
        for module in (pipe.transformer, pipe.text_encoder, pipe.vae):
            module.eval()
        if self.offload == "model":
            pipe.enable_model_cpu_offload(device=self.device)
        elif self.offload == "group":
            pipe.enable_group_offload(
                onload_device=self.device, offload_device=torch.device("cpu"), offload_type="block_level", num_blocks_per_group=1
            )
        else:
            pipe.to(self.device)
        self.pipe = pipe
        self.transformer, self.vae, self.text_encoder, self.tokenizer = pipe.transformer, pipe.vae, pipe.text_encoder, pipe.tokenizer

    @classmethod
    def explain_plan(
        cls,
        program,
        *,
        num_steps: int,
        num_frames: int,
        show_steps: int | None = 3,
        model: str | None = None,
        size: str = "1.3B",
        flow_shift: float | None = None,
        substeps: str = "delta",
        guidance: float | None = None,
        **_ignored,
    ) -> tuple[dict[str, Any], str]:
        """The flow-matching sub-step plan of ``program`` without loading weights, as data and as text.

        The scheduler config is the model's when it is a local folder or in the Hugging Face cache, else the
        released Wan 2.1 configuration.
        """
        import diffusers

        from ..steps import FlowSchedule as _FlowSchedule
        from .diffusers import peek_json
        from ._flow import explain_flow, format_flow_explain

        model_id = model or DEFAULT_MODELS.get(size, DEFAULT_MODELS["1.3B"])
        config = peek_json(model_id, "scheduler/scheduler_config.json")
        source = f"scheduler config of {model_id}"
        if config is None:
            config, source = dict(RELEASED_SCHEDULER), f"released Wan 2.1 scheduler config; {model_id} is not available here"
        _check_flow_scheduler(config, model_id)
        config = dict(config)
        if flow_shift is not None:
            config["flow_shift" if "flow_shift" in config or config.get("use_flow_sigmas") else "shift"] = float(flow_shift)
        scheduler = getattr(diffusers, config.get("_class_name", "UniPCMultistepScheduler")).from_config(config)
        info = explain_flow(
            program,
            num_steps,
            num_frames,
            scheduler=scheduler,
            schedule=_FlowSchedule.from_scheduler(scheduler),
            backbone=cls.name,
            latent_frames=(num_frames - 1) // TEMPORAL_FACTOR + 1,
            source=source,
            show_steps=show_steps,
            substeps=substeps,
            guidance=guidance,
        )
        return info, format_flow_explain(info)

    def generate(self, prompt, **kwargs):
        """:meth:`Backbone.generate`; the cost counts the image model's evaluations per *latent* frame, which is
        what it sees (1 + (F − 1) / 4 of them), and the VDM's per clip as everywhere."""
        from dataclasses import replace

        video = super().generate(prompt, **kwargs)
        latent_frames = int(video.latents.shape[2])
        images = video.program.cost(num_steps=video.settings["steps"], num_frames=latent_frames).idm_image_evals
        cost = {**video.cost, "idm_image_evals": images}
        return replace(video, cost=cost, settings={**video.settings, "latent_frames": latent_frames})

    # -- the backbone's parts -------------------------------------------------------------------------------

    @property
    def execution_device(self) -> torch.device:
        """Where the models compute (the device given; with offloading the weights live on the CPU in between)."""
        return self.device

    def make_scheduler(self):
        scheduler_class = type(self.pipe.scheduler)
        return scheduler_class.from_config(self.scheduler_config)

    def zigzag_schedule(self) -> FlowSchedule:
        return FlowSchedule.from_scheduler(self.make_scheduler())

    def check_request(self, *, frames: int, height: int, width: int, steps: int) -> None:
        super().check_request(frames=frames, height=height, width=width, steps=steps)
        if (frames - 1) % TEMPORAL_FACTOR:
            below = max(1, (frames - 1) // TEMPORAL_FACTOR * TEMPORAL_FACTOR + 1)
            raise ValueError(
                f"--frames {frames}: Wan's VAE packs {TEMPORAL_FACTOR} frames into every latent frame after the first, "
                f"so the frame count must be {TEMPORAL_FACTOR}k + 1 (e.g. 81, 49, 17, 5); try {below} or {below + TEMPORAL_FACTOR}"
            )

    def encode(self, prompts: list[str], negative_prompts: list[str]) -> Conditioning:
        cond, uncond = self.pipe.encode_prompt(
            prompt=list(prompts),
            negative_prompt=list(negative_prompts),
            do_classifier_free_guidance=True,
            num_videos_per_prompt=1,
            max_sequence_length=self.max_sequence_length,
            device=self.execution_device,
        )
        vdm = torch.cat([uncond, cond]).to(self.transformer.dtype)
        idm = None if self.image is None else self.image.encode(prompts, negative_prompts)
        return Conditioning(idm=idm, vdm=vdm, prompts=list(prompts), negative_prompts=list(negative_prompts))

    def initial_latents(self, batch: int, frames: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        # WanPipeline.prepare_latents: float32 noise of shape (B, 16, (F − 1) // 4 + 1, H / 8, W / 8)
        return self.pipe.prepare_latents(
            batch, self.latent_channels, height, width, frames, torch.float32, self.execution_device, generator
        )

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> frames ``(B, F, H, W, 3)`` in [0, 1]: the de-normalisation and decoding of ``WanPipeline``."""
        vae = self.vae
        mean = torch.tensor(vae.config.latents_mean).view(1, vae.config.z_dim, 1, 1, 1).to(latents.device, vae.dtype)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, vae.config.z_dim, 1, 1, 1).to(latents.device, vae.dtype)
        latents = latents.to(vae.dtype) / inv_std + mean
        with torch.no_grad():
            video = vae.decode(latents, return_dict=False)[0]
        frames = self.pipe.video_processor.postprocess_video(video, output_type="pt")  # (B, F, 3, H, W)
        return frames.permute(0, 1, 3, 4, 2).contiguous().cpu().float()

    def describe(self) -> dict[str, Any]:
        schedule = self.zigzag_schedule()
        return {
            **super().describe(),
            "flow_shift": schedule.shift,
            "scheduler": type(self.pipe.scheduler).__name__,
            "offload": self.offload,
            "latent_frames_per_video_frames": f"1 + (F - 1) / {TEMPORAL_FACTOR}",
        }


def _check_flow_scheduler(config: dict[str, Any], where: str) -> None:
    """Refuse a scheduler config that is not flow matching (the zigzag and the adapters assume the velocity)."""
    name = config.get("_class_name", "?")
    flow = name.startswith("FlowMatch") or (config.get("use_flow_sigmas") and config.get("prediction_type") == "flow_prediction")
    if not flow:
        raise IncompatibleModels(
            f"{where}: its scheduler ({name}, prediction_type={config.get('prediction_type')!r}) is not a flow-matching "
            "scheduler; the wan backbone needs Wan's flow-matching configuration (UniPC with use_flow_sigmas and "
            "prediction_type 'flow_prediction', or FlowMatchEulerDiscreteScheduler)"
        )
