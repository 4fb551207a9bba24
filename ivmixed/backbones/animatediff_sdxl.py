"""Registry entry of the ``animatediff-sdxl`` backbone: AnimateDiff's SDXL motion adapter on an SDXL base as the VDM, an SDXL UNet as the IDM.

This module stays free of torch and diffusers so that ``ivmixed list`` reads the spec without importing
anything heavy; the backbone itself is :class:`ivmixed.backbones._animatediff_sdxl_impl.AnimateDiffSDXLBackbone`,
imported on first load. Model ids and the sampling defaults (:data:`DEFAULTS`, the ``reference`` preset) live
here, and nowhere in the sampling code.
"""

from __future__ import annotations

from ..registry import BackboneSpec, Defaults, Option, Preset
from ..schedules import released_guidance
from .animatediff import INSTALL_HINT, LOADER_OPTIONS

DEFAULT_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
DEFAULT_MOTION_ADAPTER = "guoyww/animatediff-motion-adapter-sdxl-beta"
#: the image model is the video model's SDXL base (its own UNet, without the motion modules) unless another SDXL model
#: (a fine-tune) is given; this id is the default when the video model is a saved AnimateDiffSDXLPipeline
DEFAULT_IMAGE_MODEL = DEFAULT_MODEL

REFERENCE = Preset(
    program="IV-IV:ad",
    guidance=7.5,
    zigzag=released_guidance,
    description="the released AnimateDiff IV-mixed recipe applied to SDXL (the released code has no SDXL pipeline): "
    "IV-IV on every step with its first two sub-steps swapped, zigzag guidance ±4.000000953674316, ω 7.5; "
    "decoded as the stock SDXL pipeline decodes",
)

#: SDXL's native 1024×1024, the adapter's 16-frame training length
DEFAULTS = Defaults(height=1024, width=1024, frames=16, steps=50, guidance=7.5, program="IV-IV", fps=8, presets={"reference": REFERENCE})

OPTIONS = (
    Option("model", "str", DEFAULT_MODEL, "video model: SDXL base folder or hub id, or a saved AnimateDiffSDXLPipeline"),
    Option("motion_adapter", "str", DEFAULT_MOTION_ADAPTER, "SDXL motion adapter folder or hub id", none_ok=True),
    Option(
        "image_model", "str", None, "image model: SDXL (base or fine-tune) folder, hub id or one .safetensors UNet file "
        f"(none: the video model's SDXL base; {DEFAULT_IMAGE_MODEL} with a saved AnimateDiffSDXLPipeline)", none_ok=True,
    ),
    Option("image_model_config", "str", None, "config folder or hub id for a single-file image model (none: the base's UNet config)", none_ok=True),
    Option("vae", "str", None, "an SDXL VAE folder or hub id to use instead of the base's, e.g. madebyollin/sdxl-vae-fp16-fix", none_ok=True),
    Option("original_height", "int", None, "SDXL size conditioning: height of the source image (none: the video height)", min=1, max=16384, none_ok=True),
    Option("original_width", "int", None, "SDXL size conditioning: width of the source image (none: the video width)", min=1, max=16384, none_ok=True),
    Option("crop_top", "int", 0, "SDXL crop conditioning: top crop coordinate", min=0, max=16384),
    Option("crop_left", "int", 0, "SDXL crop conditioning: left crop coordinate", min=0, max=16384),
    Option("target_height", "int", None, "SDXL target-size conditioning: height (none: the video height)", min=1, max=16384, none_ok=True),
    Option("target_width", "int", None, "SDXL target-size conditioning: width (none: the video width)", min=1, max=16384, none_ok=True),
    *LOADER_OPTIONS,
)

SPEC = BackboneSpec(
    name="animatediff-sdxl",
    factory="ivmixed.backbones._animatediff_sdxl_impl:AnimateDiffSDXLBackbone",
    summary="AnimateDiff SDXL (SDXL base + SDXL motion adapter) mixed with an SDXL image UNet; DDIM, ω 7.5, LoRA on the image model",
    roles={
        "vdm": f"AnimateDiff SDXL: SDXL base ({DEFAULT_MODEL}) + motion adapter ({DEFAULT_MOTION_ADAPTER}), "
        "or a saved AnimateDiffSDXLPipeline folder",
        "idm": "an SDXL UNet (default: the base's own; any SDXL fine-tune as a diffusers folder, hub id or one "
        ".safetensors file); it reuses the video model's two text encoders (embeddings and pooled embedding) and VAE",
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
