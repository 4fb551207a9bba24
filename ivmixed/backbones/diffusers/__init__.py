"""The backbone kit: what a backbone built on diffusers components (ours and plugins alike) is made of.

A backbone subclasses :class:`DiffusersBackbone` (:mod:`.template`) and fills in its hooks; the parts it is
built from are here, each written once:

- :mod:`.weights` — where the weights are (:class:`ModelRequest` → :class:`Location`, :func:`resolve_models`,
  the Hugging Face cache first, one :class:`MissingWeights` naming every missing model) and which files load
  (:func:`plan_weights`: variants, :class:`UnsafeWeights` for pickle-only models);
- :mod:`.devices` — device, dtype and the keywords of every ``from_pretrained`` (:func:`load_kwargs`);
- :mod:`.schedulers` — the DDIM standard step of the released pipelines and the ᾱ table of a scheduler config;
- :mod:`.latents` — the pair check from configs alone (:func:`check_pair`) and chunked VAE decoding;
- :mod:`.text` — text encoders and the ``[uncond; cond]`` prompt batch (:func:`encode_prompt_pair`);
- :mod:`.score` — a UNet as the score model ``eps(x, t, cond)`` (:class:`UNetScore`, conditioning with the UNet's
  extra keywords in :class:`UNetCond`), and :class:`NearestResized`;
- :mod:`.adapters` — LoRA on an image UNet.

Nothing here imports diffusers or transformers until a function needs them (``import diffusers`` inside this
package is the library, never this package).
"""

from __future__ import annotations

from .adapters import LoraSpec, apply_loras, parse_loras
from .devices import dtype_keyword, dtype_name, load_kwargs, resolve_device, resolve_dtype, to_device
from .latents import check_pair, decode_video
from .schedulers import DDIM_OVERRIDES, ddim_scheduler, schedule_from_config
from .score import NearestResized, UNetCond, UNetScore, to_eps
from .template import DiffusersBackbone, PairConfigs, read_pipeline_configs
from .text import encode_prompt_pair, encode_texts, load_text_encoder
from .weights import (
    Location,
    MissingWeights,
    ModelRequest,
    UnsafeWeights,
    explain_load_error,
    hub_offline,
    hub_unreachable,
    peek_json,
    plan_weights,
    require_json,
    resolve_models,
    revision_option,
    variant_option,
)

__all__ = [
    # the template
    "DiffusersBackbone",
    "PairConfigs",
    "read_pipeline_configs",
    # weights
    "MissingWeights",
    "UnsafeWeights",
    "ModelRequest",
    "Location",
    "resolve_models",
    "peek_json",
    "require_json",
    "hub_offline",
    "hub_unreachable",
    "plan_weights",
    "revision_option",
    "variant_option",
    "explain_load_error",
    # device and dtype
    "resolve_device",
    "resolve_dtype",
    "dtype_name",
    "dtype_keyword",
    "load_kwargs",
    "to_device",
    # schedulers and the latent space
    "DDIM_OVERRIDES",
    "ddim_scheduler",
    "schedule_from_config",
    "check_pair",
    "decode_video",
    # text
    "encode_texts",
    "encode_prompt_pair",
    "load_text_encoder",
    # score models
    "UNetCond",
    "UNetScore",
    "NearestResized",
    "to_eps",
    # LoRA
    "LoraSpec",
    "parse_loras",
    "apply_loras",
]
