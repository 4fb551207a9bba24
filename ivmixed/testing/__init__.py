"""Test helpers for backbone authors (they need the ``test`` extra: pytest).

- :mod:`ivmixed.testing.contract` — :class:`BackboneContract` and :class:`MissingWeightsContract`, the
  conformance suite every backbone passes (subclass them in your plugin's tests);
- :mod:`ivmixed.testing.tiny` — tiny random diffusers components saved in the real folder layouts, so
  tests run the real loading path with no download;
- :mod:`ivmixed.testing.hub_cache` — an offline Hugging Face cache with the default repositories' file
  layouts and revisions, holding tiny weights (a backbone's first run, with its default hub ids);
- :mod:`ivmixed.testing.real_models` — the real configurations of the default networks, to build at full
  size (``meta`` device, or random weights for benchmarks).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["BackboneContract", "MissingWeightsContract", "CountingScoreModel"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module("ivmixed.testing.contract"), name)
    raise AttributeError(f"module 'ivmixed.testing' has no attribute {name!r}")
