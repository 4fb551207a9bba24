"""Registry entry of the ``videocrafter2`` backbone (light: no torch or diffusers at import time): models, defaults, presets."""

from __future__ import annotations

from ivmixed.registry import BackboneSpec, Defaults, Preset
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
    requires=("torch", "diffusers", "transformers"),
    install_hint="pip install ivmixed-videocrafter2 (from plugins/ivmixed-videocrafter2 in the ivmixed repository)",
    prefers_cuda=True,
    size_multiple=8,
    defaults=DEFAULTS,
)
