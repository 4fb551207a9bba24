"""Registry entry of the ``animatediff`` backbone: AnimateDiff as the VDM, an SD1.5 UNet as the IDM.

This module stays free of torch and diffusers so that ``ivmixed list`` reads the spec without importing
anything heavy; the backbone itself is :class:`ivmixed.backbones._animatediff_impl.AnimateDiffBackbone`,
imported on first load. Model ids live here, as defaults, and nowhere in the sampling code.
"""

from __future__ import annotations

from ..registry import BackboneSpec

#: the paper's models (reference-code-notes §3)
DEFAULT_MODEL = "SG161222/Realistic_Vision_V5.1_noVAE"
DEFAULT_MOTION_ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-3"
DEFAULT_IMAGE_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"

INSTALL_HINT = "pip install 'ivmixed' brings torch, diffusers and transformers; LoRA also needs peft (pip install 'ivmixed[lora]')."

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
)
