"""The specs of ivmixed's own metrics, registered through the ``ivmixed.metrics`` entry-point group (importing this is light)."""

from __future__ import annotations

from .registry import MetricSpec

__all__ = ["CLIP_SCORE", "FRAME_CONSISTENCY", "MOTION", "DEFAULT_CLIP_MODEL"]

#: the CLIP model of CLIPScore as it is usually computed (torchmetrics' default)
DEFAULT_CLIP_MODEL = "openai/clip-vit-large-patch14"

_HINT = "It comes with ivmixed's dependencies: pip install 'transformers>=4.40' torch"

CLIP_SCORE = MetricSpec(
    name="clip_score",
    factory="ivmixed.metrics.embedding:clip_score",
    summary="CLIP text-video score: mean over frames of the cosine between frame and prompt embeddings",
    higher_is_better=True,
    default_model=DEFAULT_CLIP_MODEL,
    requires=("torch", "transformers"),
    install_hint=_HINT,
)

FRAME_CONSISTENCY = MetricSpec(
    name="frame_consistency",
    factory="ivmixed.metrics.embedding:frame_consistency",
    summary="mean cosine between image embeddings (CLIP, or DINO/ViT CLS) of consecutive frames",
    higher_is_better=True,
    default_model=DEFAULT_CLIP_MODEL,
    requires=("torch", "transformers"),
    install_hint=_HINT,
)

MOTION = MetricSpec(
    name="motion",
    factory="ivmixed.metrics.motion:motion",
    summary="mean absolute difference of consecutive frames (0 = a still video); needs no weights",
    higher_is_better=None,
    default_model=None,
    weight_file=None,
)
