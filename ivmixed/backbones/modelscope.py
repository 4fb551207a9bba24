"""Registry entry of the ``modelscope`` backbone: ModelScope text-to-video 1.7B as the VDM, a full SD1.5 pipeline as the IDM.

This module stays free of torch and diffusers so that ``ivmixed list`` reads the spec without importing
anything heavy; the backbone itself is :class:`ivmixed.backbones._modelscope_impl.ModelScopeBackbone`,
imported on first load. Model ids and the sampling defaults (:data:`DEFAULTS`, the ``reference`` preset) live
here, and nowhere in the sampling code.
"""

from __future__ import annotations

from ..registry import BackboneSpec, Defaults, Option, Preset
from ..schedules import released_guidance
from .animatediff import LOADER_OPTIONS

#: the paper's models (reference-code-notes §3)
DEFAULT_MODEL = "ali-vilab/text-to-video-ms-1.7b"
DEFAULT_IMAGE_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"

REFERENCE = Preset(
    program="IV-IV",
    guidance=7.5,
    zigzag=released_guidance,
    description="what the released IV-mixed ModelScope pipeline computes: denoise-first IV-IV on every step "
    "(I at t, V at t−Δ, I⁻¹ at t−2Δ, V⁻¹ at t−Δ; Δ = T // N), zigzag guidance ±4.000000953674316 (the released "
    "float32 Karras ramp), ω 7.5, the image model on "
    "latents resized (nearest) to its sample size",
)

DEFAULTS = Defaults(height=256, width=256, frames=16, steps=50, guidance=7.5, program="IV-IV", fps=8, presets={"reference": REFERENCE})

INSTALL_HINT = "pip install 'ivmixed' brings torch, diffusers and transformers; LoRA also needs peft (pip install 'ivmixed[lora]')."

OPTIONS = (
    Option("model", "str", DEFAULT_MODEL, "video model: a ModelScope text-to-video folder or hub id"),
    Option("image_model", "str", DEFAULT_IMAGE_MODEL, "image model: SD1.5 pipeline folder or hub id"),
    Option("image_latent_size", "int", None, "latent size the image model sees (none: its sample size; 0: no resize)", min=0, max=1024, none_ok=True),
    *LOADER_OPTIONS,
)

SPEC = BackboneSpec(
    name="modelscope",
    factory="ivmixed.backbones._modelscope_impl:ModelScopeBackbone",
    summary="ModelScope T2V 1.7B mixed with SD1.5 (its own text encoder; latents resized to the image model's size); DDIM, ω 7.5",
    roles={
        "vdm": f"ModelScope text-to-video ({DEFAULT_MODEL}): UNet3DConditionModel, its text encoder and VAE",
        "idm": f"SD1.5 pipeline ({DEFAULT_IMAGE_MODEL}) with its own text encoder; sees frame latents resized (nearest) "
        "to its sample size (--image-latent-size)",
    },
    default_models={"model": DEFAULT_MODEL, "image_model": DEFAULT_IMAGE_MODEL},
    weight_files={"model": "model_index.json", "image_model": "model_index.json"},
    requires=("torch", "diffusers", "transformers"),
    install_hint=INSTALL_HINT,
    prefers_cuda=True,
    size_multiple=8,
    options=OPTIONS,
    defaults=DEFAULTS,
)
