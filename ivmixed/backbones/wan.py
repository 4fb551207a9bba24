"""Registry entry of the ``wan`` backbone: Wan 2.1 text-to-video, a rectified-flow model, as the VDM.

This module stays free of torch and diffusers so that ``ivmixed list`` reads the spec without importing
anything heavy; the backbone itself is :class:`ivmixed.backbones._wan_impl.WanBackbone`, imported on first
load. Model ids live here, as defaults, and nowhere in the sampling code.
"""

from __future__ import annotations

from ..registry import BackboneSpec

#: Wan 2.1 text-to-video in diffusers layout, by model size (``-o size=14B``)
DEFAULT_MODELS = {"1.3B": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "14B": "Wan-AI/Wan2.1-T2V-14B-Diffusers"}
DEFAULT_MODEL = DEFAULT_MODELS["1.3B"]
#: the experimental image model: Qwen-Image, whose VAE is of the Wan 2.1 family (16 channels, same normalisation)
QWEN_IMAGE_MODEL = "Qwen/Qwen-Image"

INSTALL_HINT = "pip install 'ivmixed' brings torch, diffusers (>= 0.33 for Wan) and transformers; offloading also needs accelerate."

SPEC = BackboneSpec(
    name="wan",
    factory="ivmixed.backbones._wan_impl:WanBackbone",
    summary="Wan 2.1 T2V (rectified flow; 1.3B, 14B with -o size=14B); UniPC flow standard step, ω 5; "
    "zigzags on the flow schedule; experimental Qwen-Image image model",
    roles={
        "vdm": f"Wan 2.1 text-to-video ({DEFAULT_MODEL}; {DEFAULT_MODELS['14B']} with -o size=14B): "
        "WanTransformer3DModel, AutoencoderKLWan, UMT5 text encoder, the pipeline's scheduler",
        "idm": f"none by default (programs with I need one); experimental: a QwenImagePipeline folder or id "
        f"({QWEN_IMAGE_MODEL}) with --image-model, sees each latent frame as an image (4 video frames each after the first)",
    },
    default_models={"model": DEFAULT_MODEL},
    weight_files={"model": "model_index.json"},
    requires=("torch", "diffusers", "transformers"),
    install_hint=INSTALL_HINT,
    prefers_cuda=True,
    size_multiple=16,
)
