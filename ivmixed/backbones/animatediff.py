"""Registry entry of the ``animatediff`` backbone: AnimateDiff as the VDM, an SD1.5 UNet as the IDM.

This module stays free of torch and diffusers so that ``ivmixed list`` reads the spec without importing
anything heavy; the backbone itself is :class:`ivmixed.backbones._animatediff_impl.AnimateDiffBackbone`,
imported on first load. Model ids and the sampling defaults (:data:`DEFAULTS`, the ``reference`` preset) live
here, and nowhere in the sampling code.
"""

from __future__ import annotations

from ..registry import BackboneSpec, Defaults, Option, Preset
from ..schedules import released_guidance

#: the paper's models (reference-code-notes §3)
DEFAULT_MODEL = "SG161222/Realistic_Vision_V5.1_noVAE"
DEFAULT_MOTION_ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-3"
DEFAULT_IMAGE_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"

REFERENCE = Preset(
    program="IV-IV:ad",
    guidance=7.5,
    zigzag=released_guidance,
    description="what the released AnimateDiff IV-mixed pipeline computes: IV-IV on every step with its first two "
    "sub-steps swapped (I at t−Δ → t−2Δ, then V at t → t−Δ; then I⁻¹ at t−2Δ, V⁻¹ at t−Δ; Δ = T // N), zigzag "
    "guidance ±4.000000953674316 (its float32 Karras ramp), ω 7.5. The default IV-IV runs the level-consistent "
    "order t → t−Δ → t−2Δ instead",
)

DEFAULTS = Defaults(height=512, width=512, frames=16, steps=50, guidance=7.5, program="IV-IV", fps=8, presets={"reference": REFERENCE})

INSTALL_HINT = "pip install 'ivmixed' brings torch, diffusers and transformers; LoRA also needs peft (pip install 'ivmixed[lora]')."

#: the options of the loaders shared by the diffusers backbones (``--image-lora`` is checked as its own flag)
LOADER_OPTIONS = (
    Option("device", "str", None, "cpu, cuda, cuda:1, ... (none: cuda when available)", none_ok=True),
    Option("dtype", "str", None, "model precision (none: fp16 on CUDA, fp32 on the CPU)", choices=("fp32", "float32", "fp16", "float16", "half", "bf16", "bfloat16"), none_ok=True),
    Option("allow_pickle", "bool", False, "allow weights that are not .safetensors (only for files you trust)"),
    Option("variant", "str", None, "weights variant of the video model, e.g. fp16", none_ok=True),
    Option("image_variant", "str", None, "weights variant of the image model, e.g. fp16", none_ok=True),
    Option("decode_chunk_size", "int", 16, "frames the VAE decodes at once", min=1, max=4096),
)

OPTIONS = (
    Option("model", "str", DEFAULT_MODEL, "video model: SD1.5-architecture base folder or hub id, or a saved AnimateDiffPipeline"),
    Option("motion_adapter", "str", DEFAULT_MOTION_ADAPTER, "motion adapter folder or hub id", none_ok=True),
    Option("image_model", "str", DEFAULT_IMAGE_MODEL, "image model: diffusers folder, hub id or one .safetensors file"),
    Option("image_model_config", "str", None, "config folder or hub id for a single-file image model", none_ok=True),
    Option("vae", "str", None, "a VAE folder or hub id to use instead of the video model's", none_ok=True),
    *LOADER_OPTIONS,
)

SPEC = BackboneSpec(
    name="animatediff",
    factory="ivmixed.backbones._animatediff_impl:AnimateDiffBackbone",
    summary="AnimateDiff (SD1.5 base + motion adapter) mixed with an SD1.5 image UNet; DDIM, ω 7.5, LoRA on the image model",
    roles={
        "vdm": f"AnimateDiff: SD1.5-architecture base ({DEFAULT_MODEL}) + motion adapter ({DEFAULT_MOTION_ADAPTER}), "
        "or a saved AnimateDiffPipeline folder",
        "idm": f"SD1.5 UNet ({DEFAULT_IMAGE_MODEL}); a diffusers folder, hub id or one .safetensors file; "
        "it reuses the video model's text embeddings and VAE",
    },
    default_models={"model": DEFAULT_MODEL, "motion_adapter": DEFAULT_MOTION_ADAPTER, "image_model": DEFAULT_IMAGE_MODEL},
    weight_files={"model": "model_index.json", "motion_adapter": "config.json", "image_model": "unet/config.json"},
    requires=("torch", "diffusers", "transformers"),
    install_hint=INSTALL_HINT,
    prefers_cuda=True,
    size_multiple=8,
    options=OPTIONS,
    defaults=DEFAULTS,
)
