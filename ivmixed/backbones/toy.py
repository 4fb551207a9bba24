"""Registry entry of the ``toy`` backbone: the analytic video world (exact scores, CPU, no weights).

This module stays free of torch so that ``ivmixed list`` can read the spec without importing anything
heavy; the world itself lives in :mod:`ivmixed.backbones.toyworld` and is imported on first load.
"""

from __future__ import annotations

from ..registry import BackboneSpec

SPEC = BackboneSpec(
    name="toy",
    factory="ivmixed.backbones.toyworld:ToyBackbone",
    summary="analytic video world: a blob moving on a torus, exact scores and metrics, runs on a CPU in seconds",
    roles={
        "vdm": "exact score of a degraded world (blurrier, fainter blobs, same motion), conditioned on appearance and direction",
        "idm": "exact score of the sharp per-frame marginal, conditioned on appearance",
    },
    requires=("torch", "diffusers"),
    size_multiple=1,
)
