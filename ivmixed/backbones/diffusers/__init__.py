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

from . import adapters, devices, latents, schedulers, score, template, text, weights
from .adapters import *  # noqa: F403
from .devices import *  # noqa: F403
from .latents import *  # noqa: F403
from .schedulers import *  # noqa: F403
from .score import *  # noqa: F403
from .template import *  # noqa: F403
from .text import *  # noqa: F403
from .weights import *  # noqa: F403

#: every public name of the kit: each module's own ``__all__``, in the order of the module list above
__all__ = [
    *template.__all__,
    *weights.__all__,
    *devices.__all__,
    *schedulers.__all__,
    *latents.__all__,
    *text.__all__,
    *score.__all__,
    *adapters.__all__,
]
