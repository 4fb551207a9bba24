"""Registry entry of the ``videocrafter2`` backbone (light: no torch or diffusers at import time): models, defaults, presets."""

from __future__ import annotations

from ivmixed.backbones.animatediff import LOADER_OPTIONS
from ivmixed.registry import BackboneSpec, Defaults, Option, Preset
from ivmixed.schedules import released_guidance

#: the released pairing (reference-code notes §1.3 / §3): ViCo's diffusers port of the VideoCrafter2 UNet,
#: zeroscope's text encoder, tokenizer, VAE and scheduler config, Realistic Vision V6.0 B1 as the image model
DEFAULT_MODEL = "adamdad/videocrafterv2_diffusers"
DEFAULT_COMPONENTS = "cerspense/zeroscope_v2_576w"
DEFAULT_IMAGE_MODEL = "SG161222/Realistic_Vision_V6.0_B1_noVAE"

#: the revisions loaded for the default ids unless the user names another: the main branches of zeroscope and
#: Realistic Vision V6.0 B1 hold pickled (``.bin``) weights only, and these open safetensors-conversion pull
#: requests of the same repositories hold the same weights as ``.safetensors`` (so no ``--allow-pickle``)
PINNED_REVISIONS = {DEFAULT_COMPONENTS: "refs/pr/46", DEFAULT_IMAGE_MODEL: "refs/pr/4"}

#: IV-IV on every step but VV-VV where i % 3 == 2 (the released ``zz = 3`` switch)
RECIPE = "IV-IV+VV-VV@i%3=2"

REFERENCE = Preset(
    program=RECIPE,
    guidance=9.0,
    zigzag=released_guidance,
    description="what the released VideoCrafter2 pipeline computes: denoise-first zigzags of size Δ = T // N on every "
    "step, IV-IV but VV-VV where i % 3 == 2, zigzag guidance ±4.000000953674316 (the released float32 Karras ramp), "
    "ω 9, SDE-DPM-Solver++ standard steps",
)

DEFAULTS = Defaults(height=512, width=512, frames=16, steps=50, guidance=9.0, program=RECIPE, fps=8, presets={"reference": REFERENCE})

#: the frame rate the released runs condition the UNet on
DEFAULT_FPS = 24

#: what ``-o NAME=VALUE`` takes, checked before anything loads (``ivmixed list --options videocrafter2``)
OPTIONS = (
    Option("model", "str", DEFAULT_MODEL, "the VideoCrafter2 UNet: a folder (config.json at its root or in unet/) or hub id"),
    Option("components", "str", DEFAULT_COMPONENTS, "zeroscope-layout pipeline folder or hub id: text encoder, tokenizer, VAE, scheduler config"),
    Option("image_model", "str", DEFAULT_IMAGE_MODEL, "image model: SD1.5-architecture pipeline folder or hub id (its own text encoder)"),
    Option("fps", "int", DEFAULT_FPS, "the frame rate the video UNet is conditioned on (frames per second)", min=1, max=1000),
    Option("revision", "str", None, "hub revision of the UNet (none: main)", none_ok=True),
    Option("components_revision", "str", None, f"hub revision of the components (none: {PINNED_REVISIONS[DEFAULT_COMPONENTS]} for the default id, else main)", none_ok=True),
    Option("image_model_revision", "str", None, f"hub revision of the image model (none: {PINNED_REVISIONS[DEFAULT_IMAGE_MODEL]} for the default id, else main)", none_ok=True),
    Option("components_variant", "str", None, "weights variant of the components, e.g. fp16", none_ok=True),
    *LOADER_OPTIONS,
)

SPEC = BackboneSpec(
    name="videocrafter2",
    factory="ivmixed_videocrafter2.backbone:VideoCrafter2Backbone",
    summary="VideoCrafter2 (fps-conditioned UNet) mixed with Realistic Vision V6.0 B1; SDE-DPM-Solver++ 2M, ω 9",
    roles={
        "vdm": f"VideoCrafter2 UNet ({DEFAULT_MODEL}) with the text encoder, tokenizer, VAE and scheduler of {DEFAULT_COMPONENTS}",
        "idm": f"SD1.5-architecture pipeline ({DEFAULT_IMAGE_MODEL}) with its own text encoder",
    },
    default_models={"model": DEFAULT_MODEL, "components": DEFAULT_COMPONENTS, "image_model": DEFAULT_IMAGE_MODEL},
    weight_files={"model": "config.json", "components": "model_index.json", "image_model": "model_index.json"},
    default_revisions={"components": PINNED_REVISIONS[DEFAULT_COMPONENTS], "image_model": PINNED_REVISIONS[DEFAULT_IMAGE_MODEL]},
    requires=("torch", "diffusers", "transformers"),
    install_hint="pip install ivmixed-videocrafter2 (from plugins/ivmixed-videocrafter2 in the ivmixed repository)",
    prefers_cuda=True,
    size_multiple=8,
    options=OPTIONS,
    defaults=DEFAULTS,
)
