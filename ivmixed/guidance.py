"""Score adapters and classifier-free guidance, written once.

A *score model* is any callable ``eps(x, t, cond) -> Tensor``: the noise prediction for video latents
``x`` of shape ``(N, C, F, H, W)`` at integer timestep ``t`` under a backbone-prepared conditioning
``cond``. For guidance, backbones prepare ``cond`` for the doubled batch ``[uncond; cond]`` (the same
layout diffusers pipelines use), and :func:`guided` evaluates both halves in one call.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch

from .program import guides_standard_step
from .steps import fold_frames, unfold_frames

__all__ = ["ScoreModel", "guided", "cfg_combine", "conditional_half", "skips_unconditional", "ImageOnVideo"]


class ScoreModel(Protocol):
    """The one calling convention of every backbone role (IDM or VDM)."""

    def __call__(self, x: torch.Tensor, t: int, cond: Any) -> torch.Tensor: ...


def cfg_combine(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """ε̂ = ε_u + g · (ε_c − ε_u) (Ho & Salimans, 2022). A negative ``g`` pushes away from the prompt."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def guided(model: ScoreModel, x: torch.Tensor, t: int, cond: Any, scale: float) -> torch.Tensor:
    """Classifier-free guided noise estimate of ``model`` at ``(x, t)``.

    ``cond`` is the backbone's conditioning for the doubled batch ``[uncond; cond]``; the model runs once on
    ``cat([x, x])`` and the halves are combined with :func:`cfg_combine`. Inversion sub-steps pass the
    negated scale, ε̂ = ε_u − γ (ε_c − ε_u), exactly as the released IV-mixed code does.
    """
    out = model(torch.cat([x, x]), t, cond)
    eps_uncond, eps_cond = out.chunk(2)
    return cfg_combine(eps_uncond, eps_cond, scale)


def conditional_half(cond: Any) -> Any | None:
    """The conditional rows of a doubled-batch conditioning ``[uncond; cond]``, or None where its type does not say.

    A tensor gives its second half of rows; any other conditioning object gives what its ``conditional_half()``
    method returns (the kit's ``UNetCond``, SDXL's text), and None without one (then nothing is skipped).
    """
    if isinstance(cond, torch.Tensor):
        return cond[cond.shape[0] // 2 :] if cond.ndim > 0 and cond.shape[0] % 2 == 0 else None
    take = getattr(cond, "conditional_half", None)
    return take() if callable(take) else None


def skips_unconditional(guidance: float, cond: Any) -> bool:
    """Whether the standard step at scale ``guidance`` runs the conditional half alone: at ω = 1,
    ε_u + 1·(ε_c − ε_u) is ε_c, so the unconditional pass is skipped (as diffusers' pipelines skip it at ω ≤ 1;
    below 1 ivmixed still guides, with the scale given). Needs a conditioning whose halves can be taken."""
    return not guides_standard_step(guidance) and conditional_half(cond) is not None


class ImageOnVideo:
    """Runs an image score model frame by frame on video latents: ``(N, C, F, H, W)`` -> ``(N·F, C, H, W)`` and back.

    ``image_eps(images, t, cond)`` receives the folded batch (frame index fastest); ``cond`` is passed through
    unchanged, one row per clip of the doubled batch, and the image model pairs each row with that clip's
    frames (e.g. ``repeat_interleave(num_frames)`` of text embeddings).
    """

    def __init__(self, image_eps: Callable[[torch.Tensor, int, Any], torch.Tensor]):
        self.image_eps = image_eps

    def __call__(self, x: torch.Tensor, t: int, cond: Any) -> torch.Tensor:
        num_frames = x.shape[2]
        return unfold_frames(self.image_eps(fold_frames(x), t, cond), num_frames)
