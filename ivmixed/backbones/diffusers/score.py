"""Score adapters: a diffusers UNet as the score model ``eps(x, t, cond)`` of :mod:`ivmixed.guidance`.

:class:`UNetScore` wraps a UNet (v- and x0-prediction converted to ε once, here, by :func:`to_eps`);
its ``cond`` is a tensor of text embeddings or a :class:`UNetCond` that carries the UNet's other
conditioning keywords (SDXL's ``added_cond_kwargs``, LCM's ``timestep_cond``, a frame rate), every tensor
laid out for the doubled CFG batch ``[uncond; cond]``. :class:`NearestResized` runs an image model at
another latent size; image models see video latents through :class:`ivmixed.guidance.ImageOnVideo`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ...steps import NoiseSchedule

__all__ = ["UNetCond", "UNetScore", "NearestResized", "to_eps"]


def to_eps(out: torch.Tensor, x: torch.Tensor, t: int, prediction_type: str, schedule: NoiseSchedule | None) -> torch.Tensor:
    """Convert a network output to the noise estimate ε (the one quantity the sampler uses).

    v-prediction (Salimans & Ho, 2022): ε = sqrt(ᾱ_t)·v + sqrt(1 − ᾱ_t)·x_t.
    x0-prediction ("sample"):           ε = (x_t − sqrt(ᾱ_t)·x̂0) / sqrt(1 − ᾱ_t).
    """
    if prediction_type == "epsilon":
        return out
    if schedule is None:
        raise ValueError(f"a {prediction_type} model needs the noise schedule to be converted to epsilon")
    alpha_bar = schedule.alpha_bar(t)
    a, s = alpha_bar**0.5, (1 - alpha_bar) ** 0.5
    if prediction_type == "v_prediction":
        return a * out + s * x
    if prediction_type == "sample":
        return (x - a * out) / s
    raise ValueError(f"unknown prediction_type {prediction_type!r}; expected epsilon, v_prediction or sample")


@dataclass(frozen=True)
class UNetCond:
    """The conditioning of one UNet for the doubled CFG batch ``[uncond; cond]``: what :class:`UNetScore` passes to it.

    Every tensor has the ``2B`` rows of the doubled batch first (negatives first, as diffusers pipelines lay
    them out); :class:`UNetScore` repeats those rows per frame where the UNet wants one row per frame.

    Args:
        encoder_hidden_states: text embeddings ``(2B, L, D)``.
        added_cond_kwargs: the UNet's ``added_cond_kwargs`` (SDXL: ``{"text_embeds": (2B, 1280), "time_ids": (2B, 6)}``).
        timestep_cond: the UNet's ``timestep_cond`` (an LCM's guidance embedding), ``(2B, D)``.
        extra: other keywords of the UNet call. A tensor whose first axis has the ``2B`` rows is repeated like
            the embeddings; anything else (a number such as VideoCrafter2's ``fps``) is passed as it is.
    """

    encoder_hidden_states: torch.Tensor
    added_cond_kwargs: dict[str, torch.Tensor] | None = None
    timestep_cond: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """The rows of the doubled batch (``2B``)."""
        return int(self.encoder_hidden_states.shape[0])

    def map_rows(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "UNetCond":
        """``fn`` applied to every tensor whose first axis has the ``2B`` rows; everything else kept as it is."""
        rows = self.rows

        def on_rows(value: Any) -> Any:
            return fn(value) if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == rows else value

        return UNetCond(
            encoder_hidden_states=on_rows(self.encoder_hidden_states),
            added_cond_kwargs=None if self.added_cond_kwargs is None else {k: on_rows(v) for k, v in self.added_cond_kwargs.items()},
            timestep_cond=on_rows(self.timestep_cond),
            extra={k: on_rows(v) for k, v in self.extra.items()},
        )

    def repeated(self, reps: int) -> "UNetCond":
        """Each row repeated ``reps`` times in place (``repeat_interleave``): one row per frame of its clip."""
        return self if reps == 1 else self.map_rows(lambda value: value.repeat_interleave(reps, dim=0))

    def conditional_half(self) -> "UNetCond":
        """The conditional rows (the second half of ``[uncond; cond]``): what ω = 1 evaluates alone."""
        half = self.rows // 2
        return self.map_rows(lambda value: value[half:])

    def call_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the UNet call (``encoder_hidden_states`` and whichever of the others are set)."""
        kwargs: dict[str, Any] = {"encoder_hidden_states": self.encoder_hidden_states, **self.extra}
        if self.added_cond_kwargs is not None:
            kwargs["added_cond_kwargs"] = self.added_cond_kwargs
        if self.timestep_cond is not None:
            kwargs["timestep_cond"] = self.timestep_cond
        return kwargs


class UNetScore:
    """A diffusers UNet as a score model ``eps(x, t, cond)``.

    ``x`` is whatever the UNet takes: video latents ``(N, C, F, H, W)`` for a motion or 3-D UNet, a batch of
    images ``(N·F, C, H, W)`` for an image UNet (behind :class:`~ivmixed.guidance.ImageOnVideo`). ``cond``
    is the text embedding batch ``(N, L, D)`` of the doubled CFG batch, or a :class:`UNetCond` holding it
    with the UNet's other conditioning. With ``repeat_cond`` each row is repeated for every frame of its clip
    (``repeat_interleave``), which is what image UNets and — since diffusers 0.31 — ``UNetMotionModel``
    expect; ``UNet3DConditionModel`` repeats internally.

    Args:
        unet: the diffusers model.
        schedule: the ᾱ table, used to convert v- or x0-prediction outputs to ε.
        prediction_type: the UNet's training target (the scheduler config's ``prediction_type``).
        repeat_cond: repeat conditioning rows per frame (see above).
        call_kwargs: keyword arguments of every call, whatever the conditioning (per-prompt ones belong in
            :attr:`UNetCond.extra`).
    """

    def __init__(
        self,
        unet,
        *,
        schedule: NoiseSchedule | None = None,
        prediction_type: str = "epsilon",
        repeat_cond: bool = False,
        call_kwargs: dict[str, Any] | None = None,
    ):
        self.unet = unet
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.repeat_cond = repeat_cond
        self.call_kwargs = dict(call_kwargs or {})
        self._repeated: tuple[Any, int, Any] | None = None

    def _rows(self, cond: Any, x: torch.Tensor) -> Any:
        if not self.repeat_cond:
            return cond
        given = cond.rows if isinstance(cond, UNetCond) else cond.shape[0]
        rows = x.shape[0] * x.shape[2] if x.ndim == 5 else x.shape[0]
        if rows % given:
            raise ValueError(f"cannot pair {given} text embeddings with {rows} network rows")
        reps = rows // given
        cached = self._repeated
        if cached is not None and cached[0] is cond and cached[1] == reps:
            return cached[2]
        if isinstance(cond, UNetCond):
            repeated = cond.repeated(reps)
        else:
            repeated = cond.repeat_interleave(reps, dim=0) if reps > 1 else cond
        self._repeated = (cond, reps, repeated)
        return repeated

    def __call__(self, x: torch.Tensor, t: int, cond: torch.Tensor | UNetCond) -> torch.Tensor:
        rows = self._rows(cond, x)
        kwargs = rows.call_kwargs() if isinstance(rows, UNetCond) else {"encoder_hidden_states": rows}
        with torch.no_grad():
            out = self.unet(x, t, return_dict=False, **kwargs, **self.call_kwargs)[0]
        return to_eps(out, x, t, self.prediction_type, self.schedule)


class NearestResized:
    """Runs an image score model at a fixed latent size: ``x`` resized (nearest) to ``size``, ε resized back.

    This is ModelScope's IDM path in the released code (the SD1.5 UNet sees 64×64 latents whatever the
    video size). Only the noise estimate is resized back; the latent itself is never resampled, so where
    the resize shrinks the frame, the frame keeps its detail (see docs/backbones.md).
    """

    def __init__(self, model, size: tuple[int, int]):
        self.model = model
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, x: torch.Tensor, t: int, cond: Any) -> torch.Tensor:
        height, width = x.shape[-2:]
        if (height, width) == self.size:
            return self.model(x, t, cond)
        small = torch.nn.functional.interpolate(x, size=self.size, mode="nearest")
        return torch.nn.functional.interpolate(self.model(small, t, cond), size=(height, width), mode="nearest")
