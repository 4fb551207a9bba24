"""Metrics of decoded videos, as plugins of the ``ivmixed.metrics`` entry-point group (see :mod:`ivmixed.metrics.registry`).

Built in: ``clip_score`` and ``frame_consistency`` (:mod:`ivmixed.metrics.embedding`, CLIP or DINO weights from a
local folder or the Hugging Face cache) and ``motion`` (:mod:`ivmixed.metrics.motion`, no weights). Importing
this package imports neither torch nor transformers.
"""

from .registry import (
    ENTRY_POINT_GROUP,
    Metric,
    MetricSpec,
    UnknownMetric,
    discover_metrics,
    get_metric_spec,
    load_metric,
    register_metric,
    unregister_metric,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Metric",
    "MetricSpec",
    "UnknownMetric",
    "discover_metrics",
    "get_metric_spec",
    "load_metric",
    "register_metric",
    "unregister_metric",
]
