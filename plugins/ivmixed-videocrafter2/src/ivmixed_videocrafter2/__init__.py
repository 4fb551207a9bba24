"""ivmixed plugin for VideoCrafter2: its fps-conditioned video UNet and the ``videocrafter2`` backbone.

The backbone is registered through the ``ivmixed.backbones`` entry-point group (see :mod:`.spec`);
nothing heavy is imported until it is loaded.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["VideoCrafter2UNet", "VideoCrafter2Backbone", "SPEC"]

_LAZY = {"VideoCrafter2UNet": ".unet", "VideoCrafter2Backbone": ".backbone", "SPEC": ".spec"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
