"""The real architectures of every default model, recorded as data, to build at full size with random weights.

Each :class:`RealModel` holds the configuration values of one network as its repository publishes them
(``config.json`` of the UNets, motion adapter and VAE, the text encoders' ``text_encoder/config.json``), the
repositories and backbones that use it, and the weight files whose sizes its parameter count must match.
:func:`build` makes the network from those values on any device: ``meta`` for shape and size checks
without memory (``tests/test_real_models.py``), the CPU or CUDA with random weights for the full-size
benchmarks (``benchmarks/full_size.py``, ``benchmarks/gpu.py``). Nothing is downloaded.

Where a value is known from a published file listing or config, ``evidence`` says ``listing``; where it is
the architecture's standard configuration (the SD1.5 family's, OpenCLIP ViT-H's) and was not read from that
repository here, ``assumed``. The parameter counts are checked against the published weight sizes, which
ties the two together: a wrong width or depth would not give a 5.65 GB UNet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

import torch

__all__ = ["RealModel", "MODELS", "BACKBONE_MODELS", "FAMILY_MODELS", "build", "parameter_count", "latent_example"]

_SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "act_fn": "silu",
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "center_input_sample": False,
}

_MODELSCOPE_UNET = {
    "sample_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"],
    "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "cross_attention_dim": 1024,
    "attention_head_dim": 64,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "act_fn": "silu",
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
}

_SD_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "act_fn": "silu",
    "sample_size": 512,
    "scaling_factor": 0.18215,
}

_CLIP_L_TEXT = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 768,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}

_OPENCLIP_H_TEXT = {  # the 24-layer OpenCLIP ViT-H text tower without its last layer, as diffusers ships it
    "vocab_size": 49408,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 512,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}

_MOTION_ADAPTER_V153 = {
    "block_out_channels": [320, 640, 1280, 1280],
    "motion_layers_per_block": 2,
    "motion_mid_block_layers_per_block": 1,
    "motion_num_attention_heads": 8,
    "motion_norm_num_groups": 32,
    "motion_max_seq_length": 32,
    "use_motion_mid_block": False,
    "conv_in_channels": None,
}


_SDXL_UNET = {  # stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (the standard SDXL base architecture)
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [320, 640, 1280],
    "layers_per_block": 2,
    "transformer_layers_per_block": [1, 2, 10],
    "cross_attention_dim": 2048,
    "attention_head_dim": [5, 10, 20],
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "act_fn": "silu",
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "center_input_sample": False,
}

_SDXL_VAE = {**_SD_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}

_OPENCLIP_BIGG_TEXT = {  # OpenCLIP ViT-bigG/14's text tower with its projection: SDXL's text_encoder_2
    "vocab_size": 49408,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 1280,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}

_MOTION_ADAPTER_SDXL = {  # guoyww/animatediff-motion-adapter-sdxl-beta: three blocks like the SDXL UNet, no mid block
    "block_out_channels": [320, 640, 1280],
    "motion_layers_per_block": 2,
    "motion_mid_block_layers_per_block": 1,
    "motion_num_attention_heads": 8,
    "motion_norm_num_groups": 32,
    "motion_max_seq_length": 32,
    "use_motion_mid_block": False,
    "conv_in_channels": None,
}

#: diffusers' MotionAdapter defaults (the AnimateDiff v2 module for SD1.5, with a mid block): the architecture of
#: the AnimateDiff-Lightning single files and of AnimateLCM's motion adapter
_MOTION_ADAPTER_V2 = {**_MOTION_ADAPTER_V153, "use_motion_mid_block": True}


@dataclass(frozen=True)
class RealModel:
    """One network at its published configuration.

    Attributes:
        name: key in :data:`MODELS`.
        target: ``"module:Class"`` of the class that builds it.
        config: its configuration values (diffusers ``config.json`` keys, or a transformers config's).
        kind: ``unet2d``, ``motion_unet`` (an SD1.5 UNet with a motion adapter), ``unet3d``, ``vae``, ``text``, ``adapter``.
        repositories: ``{repo_id: weights file}`` of the default repositories holding this network; their
            sizes are recorded in ``tests/data/hub_layouts.json``.
        used_by: ``backbone:option`` entries that load it.
        evidence: ``listing`` or ``assumed`` (see the module docstring), with a short note.
        config_class: for transformers models, ``"module:ConfigClass"``.
    """

    name: str
    target: str
    config: dict[str, Any]
    kind: str
    repositories: dict[str, str] = field(default_factory=dict)
    used_by: tuple[str, ...] = ()
    evidence: str = "assumed"
    config_class: str | None = None


MODELS: dict[str, RealModel] = {
    model.name: model
    for model in [
        RealModel(
            "sd15_unet",
            "diffusers:UNet2DConditionModel",
            _SD15_UNET,
            "unet2d",
            repositories={
                "stable-diffusion-v1-5/stable-diffusion-v1-5": "unet/diffusion_pytorch_model.safetensors",
                "SG161222/Realistic_Vision_V5.1_noVAE": "unet/diffusion_pytorch_model.safetensors",
                "SG161222/Realistic_Vision_V6.0_B1_noVAE": "unet/diffusion_pytorch_model.bin",
            },
            used_by=("animatediff:model", "animatediff:image_model", "modelscope:image_model", "videocrafter2:image_model"),
            evidence="assumed: the SD1.5 UNet configuration, shared by the Realistic Vision fine-tunes",
        ),
        RealModel(
            "motion_adapter_v1_5_3",
            "diffusers:MotionAdapter",
            _MOTION_ADAPTER_V153,
            "adapter",
            repositories={"guoyww/animatediff-motion-adapter-v1-5-3": "diffusion_pytorch_model.safetensors"},
            used_by=("animatediff:motion_adapter",),
            evidence="listing: motion_max_seq_length 32, use_motion_mid_block false; the rest assumed (MotionAdapter for SD1.5)",
        ),
        RealModel(
            "animatediff_motion_unet",
            "diffusers:UNetMotionModel",
            {"unet": "sd15_unet", "motion_adapter": "motion_adapter_v1_5_3"},
            "motion_unet",
            used_by=("animatediff:model",),
            evidence="built as AnimateDiffPipeline builds it: UNetMotionModel.from_unet2d(SD1.5 UNet, adapter)",
        ),
        RealModel(
            "modelscope_unet",
            "diffusers:UNet3DConditionModel",
            _MODELSCOPE_UNET,
            "unet3d",
            repositories={"ali-vilab/text-to-video-ms-1.7b": "unet/diffusion_pytorch_model.safetensors"},
            used_by=("modelscope:model",),
            evidence="assumed: ModelScope T2V 1.7B's unet/config.json as diffusers converted it (checked: 5.65 GB fp32)",
        ),
        RealModel(
            "videocrafter2_unet",
            "ivmixed_videocrafter2.unet:VideoCrafter2UNet",
            {**_MODELSCOPE_UNET, "fps_cond": True},
            "unet3d",
            repositories={"adamdad/videocrafterv2_diffusers": "diffusion_pytorch_model.safetensors"},
            used_by=("videocrafter2:model",),
            evidence="listing: fps_cond true, cross_attention_dim 1024; the rest assumed (ModelScope's layout, checked: 5.65 GB fp32)",
        ),
        RealModel(
            "sd_vae",
            "diffusers:AutoencoderKL",
            _SD_VAE,
            "vae",
            repositories={
                "stable-diffusion-v1-5/stable-diffusion-v1-5": "vae/diffusion_pytorch_model.safetensors",
                "SG161222/Realistic_Vision_V5.1_noVAE": "vae/diffusion_pytorch_model.safetensors",
                "ali-vilab/text-to-video-ms-1.7b": "vae/diffusion_pytorch_model.safetensors",
                "cerspense/zeroscope_v2_576w": "vae/diffusion_pytorch_model.bin",
            },
            used_by=("animatediff:model", "modelscope:model", "videocrafter2:components"),
            evidence="assumed: the SD VAE (KL-f8) configuration",
        ),
        RealModel(
            "clip_l_text",
            "transformers:CLIPTextModel",
            _CLIP_L_TEXT,
            "text",
            repositories={
                "stable-diffusion-v1-5/stable-diffusion-v1-5": "text_encoder/model.safetensors",
                "SG161222/Realistic_Vision_V5.1_noVAE": "text_encoder/model.safetensors",
                "stabilityai/stable-diffusion-xl-base-1.0": "text_encoder/model.safetensors",
            },
            used_by=("animatediff:model", "modelscope:image_model", "videocrafter2:image_model"),
            evidence="assumed: CLIP ViT-L/14's text encoder, as in every SD1.5 repository and as SDXL's first text encoder",
            config_class="transformers:CLIPTextConfig",
        ),
        RealModel(
            "openclip_h_text",
            "transformers:CLIPTextModel",
            _OPENCLIP_H_TEXT,
            "text",
            repositories={
                "ali-vilab/text-to-video-ms-1.7b": "text_encoder/model.safetensors",
                "cerspense/zeroscope_v2_576w": "text_encoder/pytorch_model.bin",
            },
            used_by=("modelscope:model", "videocrafter2:components"),
            evidence="assumed: OpenCLIP ViT-H's text tower (1024 wide, 23 of 24 layers), as SD2 and ModelScope use it",
            config_class="transformers:CLIPTextConfig",
        ),
        RealModel(
            "sdxl_unet",
            "diffusers:UNet2DConditionModel",
            _SDXL_UNET,
            "unet2d",
            repositories={"stabilityai/stable-diffusion-xl-base-1.0": "unet/diffusion_pytorch_model.safetensors"},
            evidence="assumed: the SDXL base UNet configuration (checked: 2,567,463,684 parameters, 10.3 GB fp32 / 5.14 GB fp16 as listed)",
        ),
        RealModel(
            "motion_adapter_sdxl",
            "diffusers:MotionAdapter",
            _MOTION_ADAPTER_SDXL,
            "adapter",
            repositories={"guoyww/animatediff-motion-adapter-sdxl-beta": "diffusion_pytorch_model.safetensors"},
            evidence="assumed: three motion blocks of the SDXL widths, max sequence 32, no mid block (checked: 949 MB fp32 / 474 MB fp16 as listed)",
        ),
        RealModel(
            "animatediff_sdxl_motion_unet",
            "diffusers:UNetMotionModel",
            {"unet": "sdxl_unet", "motion_adapter": "motion_adapter_sdxl"},
            "motion_unet",
            evidence="built as AnimateDiffSDXLPipeline builds it: UNetMotionModel.from_unet2d(SDXL UNet, SDXL adapter)",
        ),
        RealModel(
            "sdxl_vae",
            "diffusers:AutoencoderKL",
            _SDXL_VAE,
            "vae",
            repositories={"stabilityai/stable-diffusion-xl-base-1.0": "vae/diffusion_pytorch_model.safetensors"},
            evidence="assumed: the SD VAE architecture with SDXL's scaling factor 0.13025 and force_upcast (checked: 335 MB fp32 as listed)",
        ),
        RealModel(
            "openclip_bigg_text",
            "transformers:CLIPTextModelWithProjection",
            _OPENCLIP_BIGG_TEXT,
            "text",
            repositories={"stabilityai/stable-diffusion-xl-base-1.0": "text_encoder_2/model.safetensors"},
            evidence="assumed: OpenCLIP ViT-bigG/14's text tower with projection, SDXL's second (checked: 2.78 GB fp32 / 1.39 GB fp16 as listed)",
            config_class="transformers:CLIPTextConfig",
        ),
        RealModel(
            "motion_adapter_v2",
            "diffusers:MotionAdapter",
            _MOTION_ADAPTER_V2,
            "adapter",
            repositories={
                "ByteDance/AnimateDiff-Lightning": "animatediff_lightning_4step_diffusers.safetensors",
                "wangfuyun/AnimateLCM": "diffusion_pytorch_model.safetensors",
            },
            evidence="assumed: MotionAdapter's defaults (four blocks, mid block); checked: the Lightning files (908 MB) are its "
            "fp16 weights, AnimateLCM's adapter 1.82 GB fp32 / 908 MB fp16, as listed",
        ),
        RealModel(
            "fewstep_motion_unet",
            "diffusers:UNetMotionModel",
            {"unet": "sd15_unet", "motion_adapter": "motion_adapter_v2"},
            "motion_unet",
            evidence="built as AnimateDiffPipeline builds it: UNetMotionModel.from_unet2d(SD1.5 UNet, the v2 adapter of Lightning / AnimateLCM)",
        ),
    ]
}

#: the networks each backbone loads (what one of its runs evaluates)
BACKBONE_MODELS: dict[str, tuple[str, ...]] = {
    "animatediff": ("animatediff_motion_unet", "sd15_unet", "clip_l_text", "sd_vae"),
    "modelscope": ("modelscope_unet", "sd15_unet", "openclip_h_text", "clip_l_text", "sd_vae"),
    "videocrafter2": ("videocrafter2_unet", "sd15_unet", "openclip_h_text", "clip_l_text", "sd_vae"),
}

#: the networks of the SDXL and few-step families (the AnimateDiff-SDXL and AnimateDiff-Lightning / AnimateLCM
#: backbones; the few-step image model is the SD1.5 UNet)
FAMILY_MODELS: dict[str, tuple[str, ...]] = {
    "sdxl": ("animatediff_sdxl_motion_unet", "sdxl_unet", "clip_l_text", "openclip_bigg_text", "sdxl_vae"),
    "fewstep": ("fewstep_motion_unet", "sd15_unet", "clip_l_text", "sd_vae"),
}


def _is_sdxl(name: str) -> bool:
    model = MODELS[name]
    config = MODELS[model.config["unet"]].config if model.kind == "motion_unet" else model.config
    return config.get("addition_embed_type") == "text_time"


def _resolve(target: str):
    module, _, name = target.partition(":")
    return getattr(import_module(module), name)


def build(name: str, device: str | torch.device = "meta", dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The network ``name`` of :data:`MODELS` at full size on ``device`` (``meta``: shapes only, no memory), random weights, eval mode."""
    model = MODELS[name]
    if model.kind == "motion_unet":
        unet = build(model.config["unet"], device, dtype)
        adapter = build(model.config["motion_adapter"], device, dtype)
        cls = _resolve(model.target)
        with torch.device(device):
            motion = cls.from_unet2d(unet, adapter, load_weights=torch.device(device).type != "meta")
        return motion.eval()
    cls = _resolve(model.target)
    with torch.device(device):
        if model.config_class is not None:
            module = cls(_resolve(model.config_class)(**model.config))
        else:
            module = cls(**model.config)
    if dtype != torch.float32:
        module = module.to(dtype)
    return module.eval()


def parameter_count(module: torch.nn.Module) -> int:
    """Parameters and persistent buffers that a weights file stores (what its size is made of)."""
    params = sum(p.numel() for p in module.parameters())
    persistent = set(module.state_dict().keys())
    buffers = sum(b.numel() for n, b in module.named_buffers() if n in persistent)
    return params + buffers


def latent_example(name: str, *, frames: int = 2, size: int = 16, device="meta", dtype=torch.float32) -> dict[str, torch.Tensor]:
    """Inputs of one guided evaluation of ``name``: the doubled CFG batch (2 rows) of ``frames`` latents of ``size``².

    Returns ``{"x": ..., "cond": ...}`` for the denoisers (``x`` is ``(2, 4, F, size, size)``, ``cond`` the
    text embeddings of the width the model expects; for SDXL UNets also ``text_embeds``, the pooled embedding
    of the second text encoder ``(2, 1280)``, and ``time_ids`` ``(2, 6)``), ``{"tokens": ...}`` for text
    encoders and ``{"latents": ...}`` (``(2·F, 4, size, size)``) for the VAE decoder.
    """
    model = MODELS[name]
    if model.kind == "text":
        return {"tokens": torch.zeros(2, 77, dtype=torch.long, device=device)}
    if model.kind == "vae":
        return {"latents": torch.zeros(2 * frames, 4, size, size, device=device, dtype=dtype)}
    config = MODELS[model.config["unet"]].config if model.kind == "motion_unet" else model.config
    inputs = {
        "x": torch.zeros(2, 4, frames, size, size, device=device, dtype=dtype),
        "cond": torch.zeros(2, 77, int(config["cross_attention_dim"]), device=device, dtype=dtype),
    }
    if _is_sdxl(name):
        time_ids = 6  # (original size, crop top-left, target size), each (h, w)
        pooled = int(config["projection_class_embeddings_input_dim"]) - time_ids * int(config["addition_time_embed_dim"])
        inputs["text_embeds"] = torch.zeros(2, pooled, device=device, dtype=dtype)
        inputs["time_ids"] = torch.tensor([[8.0 * size, 8.0 * size, 0.0, 0.0, 8.0 * size, 8.0 * size]] * 2, device=device, dtype=dtype)
    return inputs


def evaluate(name: str, module: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """One evaluation of ``name`` on :func:`latent_example` inputs, through ivmixed's own score adapters.

    Denoisers run as the backbones run them: an SD1.5 UNet frame by frame behind
    :class:`~ivmixed.guidance.ImageOnVideo` (embeddings repeated per frame), the AnimateDiff motion UNet with
    embeddings repeated per frame, the 3-D UNets on the clip (VideoCrafter2 with ``fps=24``), each wrapped
    in :class:`~ivmixed.backbones.diffusers.UNetScore` at timestep 500. SDXL UNets also get
    ``added_cond_kwargs`` (pooled embedding and time ids): one row per clip for the motion UNet (it repeats
    them per frame itself), one per frame for the image UNet. Text encoders encode the prompt pair (their
    last hidden states); the VAE decodes the frames.
    """
    from ..backbones.diffusers import UNetCond, UNetScore
    from ..guidance import ImageOnVideo

    kind = MODELS[name].kind
    with torch.no_grad():
        if kind == "text":
            return module(inputs["tokens"]).last_hidden_state
        if kind == "vae":
            return module.decode(inputs["latents"]).sample
    cond, fixed = inputs["cond"], None
    if "text_embeds" in inputs:
        added = {k: inputs[k] for k in ("text_embeds", "time_ids")}
        if kind == "unet2d":  # one row per clip, repeated per frame with the embeddings by UNetScore
            cond = UNetCond(encoder_hidden_states=inputs["cond"], added_cond_kwargs=added)
        else:  # the motion UNet repeats its time embedding per frame itself
            fixed = {"added_cond_kwargs": added}
    if kind == "unet2d":
        score = ImageOnVideo(UNetScore(module, repeat_cond=True))
    elif kind == "motion_unet":
        score = UNetScore(module, repeat_cond=True, call_kwargs=fixed)
    else:
        score = UNetScore(module, call_kwargs={"fps": 24} if MODELS[name].config.get("fps_cond") else None)
    return score(inputs["x"], 500, cond)
