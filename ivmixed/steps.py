"""Pure step primitives of the sampler algebra: the deterministic step (both directions) and Gaussian re-noising.

Every schedule writes a latent at level t as x_t = a_t·x0 + s_t·ε:

    variance preserving (:class:`NoiseSchedule`):  a_t = sqrt(ᾱ_t), s_t = sqrt(1 − ᾱ_t), integer levels t = 0..T−1
    rectified flow      (:class:`FlowSchedule`):   a = 1 − σ, s = σ, with σ = σ(τ) the shifted flow time of a
                                                   level τ in [0, T] (see :class:`FlowSchedule`)

A prediction is converted once to the pair (x̂0, ε̂) (:func:`split_prediction`: ε, v, x0 or flow velocity), and
the deterministic move to any other level is x' = a_to·x̂0 + s_to·ε̂ (:func:`deterministic_step`): DDIM for VP
(η = 0), the Euler step x' = x + (σ_to − σ_from)·v for flow, and the inversion when the target level is higher.

Notation of the VP case (variable name -> symbol in Song et al., "Denoising Diffusion Implicit Models", 2020):

    alpha_bar(t)        -> ᾱ_t (``alphas_cumprod[t]``)
    a_t = sqrt(ᾱ_t)     -> sqrt(α_t) in the DDIM paper
    s_t = sqrt(1 - ᾱ_t)
    eps                 -> ε_θ(x_t, t)
    x0                  -> "predicted x_0", formula (12)

Nothing here holds state: the noise schedule, the levels and the random generator are arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = [
    "NoiseSchedule",
    "FlowSchedule",
    "PREDICTION_TYPES",
    "split_prediction",
    "deterministic_step",
    "ddim_step",
    "add_noise",
    "fold_frames",
    "unfold_frames",
]

#: what a score model may predict; :func:`split_prediction` converts each to (x̂0, ε̂)
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample", "flow_prediction")


@dataclass(frozen=True)
class NoiseSchedule:
    """The table ᾱ_t of a backbone, t = 0..T-1, with the convention for levels below 0.

    Args:
        alphas_cumprod (`torch.Tensor`): 1-D float tensor of ᾱ_t, length T.
        final_alpha_cumprod (`float`): ᾱ used for any level < 0. diffusers' DDIM schedulers use ᾱ_0 when
            ``set_alpha_to_one=False`` and 1.0 when ``set_alpha_to_one=True``.
    """

    alphas_cumprod: torch.Tensor
    final_alpha_cumprod: float

    @classmethod
    def from_scheduler(cls, scheduler) -> "NoiseSchedule":
        """Read ᾱ_t and the level-below-0 convention off any diffusers scheduler."""
        # a float32 CPU table, as diffusers keeps it: its 0-dim entries combine with latents on any device
        alphas_cumprod = scheduler.alphas_cumprod.detach().to("cpu", torch.float32)
        final = getattr(scheduler, "final_alpha_cumprod", None)
        if final is None:
            final = getattr(scheduler, "initial_alpha_cumprod", None)
        if final is None:  # schedulers without the DDIM convention (DPM-Solver, Euler): ᾱ_0
            final = alphas_cumprod[0]
        return cls(alphas_cumprod=alphas_cumprod, final_alpha_cumprod=float(final))

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def alpha_bar(self, t: int) -> torch.Tensor:
        """ᾱ at integer level ``t`` (a 0-dim float32 tensor); levels below 0 give ``final_alpha_cumprod``."""
        t = int(t)
        if t >= self.num_train_timesteps:
            raise ValueError(f"level {t} is outside the schedule: the table has T = {self.num_train_timesteps} levels")
        if t < 0:
            return torch.tensor(self.final_alpha_cumprod, dtype=torch.float32)
        return self.alphas_cumprod[t]

    def same_as(self, other: "NoiseSchedule", atol: float = 1e-6) -> bool:
        return (
            self.alphas_cumprod.shape == other.alphas_cumprod.shape
            and bool(torch.allclose(self.alphas_cumprod, other.alphas_cumprod, atol=atol, rtol=0))
        )

    #: what the score models on this schedule return (the backbones' adapters convert v and x0 to ε)
    prediction_type = "epsilon"

    def coefficients(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_t, s_t) = (sqrt(ᾱ_t), sqrt(1 − ᾱ_t)) at integer level ``t``, as 0-dim float32 tensors."""
        alpha_bar = self.alpha_bar(t)
        return alpha_bar ** (0.5), (1 - alpha_bar) ** (0.5)

    def timestep(self, t: int) -> int:
        """The timestep the network is called with at level ``t``: the level itself."""
        return t

    def grid_levels(self, scheduler) -> list[int]:
        """The level of each step of a scheduler configured with ``set_timesteps``: its integer timesteps."""
        return [int(t) for t in scheduler.timesteps]

    def substeps(self, program, step: int, t: int, num_steps: int, grid: Sequence[int] | None = None):
        """The zigzag sub-steps of ``program`` at step ``step`` (:meth:`ivmixed.program.Program.substeps`).

        Each moves Δ = T // N; with ``grid`` (the levels of :meth:`grid_levels`) each moves to the neighbouring
        grid timestep instead (``substeps="grid"``).
        """
        return program.substeps(step, t, num_steps, self.num_train_timesteps, grid=grid)


@dataclass(frozen=True)
class FlowSchedule:
    """The rectified-flow schedule x = (1 − σ)·x0 + σ·ε of a flow-matching model, with its time shift.

    Levels τ are points of the *unshifted* training time axis, a float in [0, T] (T = ``num_train_timesteps``),
    and map to the flow time σ the latent is at through the shift s that flow-matching schedulers apply
    (``shift`` in ``FlowMatchEulerDiscreteScheduler``, ``flow_shift`` in ``UniPCMultistepScheduler``):

        u = τ / T,   σ(τ) = s·u / (1 + (s − 1)·u),   network timestep = σ·T

    The sampling grid of such a scheduler is evenly spaced in u, so the sub-step size Δ = T // N on τ — the
    same rule as for the ᾱ table — moves a zigzag about one grid spacing, whatever the shift (a move on the
    σ axis is shorter where the shift crowds the grid, near σ = 1). Level T is pure noise (σ = 1).

    Args:
        num_train_timesteps (`int`): T, the length of the training time axis (1000 for Wan 2.1).
        shift (`float`): the time shift s (Wan 2.1: 3.0 for 480p in its scheduler config, 5.0 recommended for 720p).
    """

    num_train_timesteps: int = 1000
    shift: float = 1.0

    prediction_type = "flow_prediction"

    def __post_init__(self):
        if not isinstance(self.num_train_timesteps, int) or self.num_train_timesteps < 1:
            raise ValueError(f"num_train_timesteps must be an integer >= 1, got {self.num_train_timesteps!r}")
        if not (float(self.shift) > 0 and float(self.shift) < float("inf")):
            raise ValueError(f"the flow shift must be a positive number, got {self.shift!r}")

    @classmethod
    def from_scheduler(cls, scheduler, shift: float | None = None) -> "FlowSchedule":
        """Read T and the shift off a flow-matching diffusers scheduler (``FlowMatchEulerDiscreteScheduler``,
        ``UniPCMultistepScheduler`` / ``DPMSolverMultistepScheduler`` with ``use_flow_sigmas``)."""
        config = scheduler.config
        if shift is None:
            shift = config.get("flow_shift", config.get("shift", 1.0))
        return cls(num_train_timesteps=int(config.get("num_train_timesteps", 1000)), shift=float(shift))

    def sigma(self, level: float) -> float:
        """σ(τ) of level ``level`` (float64 arithmetic)."""
        level = float(level)
        if not 0.0 <= level <= self.num_train_timesteps:
            raise ValueError(f"level {level:g} is outside the flow schedule's axis [0, {self.num_train_timesteps}]")
        u = level / self.num_train_timesteps
        return self.shift * u / (1.0 + (self.shift - 1.0) * u)

    def level_of_sigma(self, sigma: float) -> float:
        """The inverse of :meth:`sigma`: τ = T·σ / (s − (s − 1)·σ)."""
        sigma = float(sigma)
        return self.num_train_timesteps * sigma / (self.shift - (self.shift - 1.0) * sigma)

    def coefficients(self, level: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, s) = (1 − σ, σ) at ``level``, as 0-dim float32 tensors."""
        sigma = torch.tensor(self.sigma(level), dtype=torch.float32)
        return 1 - sigma, sigma

    def timestep(self, level: float) -> float:
        """The timestep a flow-matching network is called with at ``level``: σ·T."""
        return self.sigma(level) * self.num_train_timesteps

    def grid_levels(self, scheduler) -> list[float]:
        """The level of each step of a flow scheduler configured with ``set_timesteps``, read off its ``sigmas``."""
        return [self.level_of_sigma(float(sigma)) for sigma in scheduler.sigmas[: len(scheduler.timesteps)]]

    def substeps(self, program, step: int, level: float, num_steps: int, grid: Sequence[float] | None = None):
        """The zigzag sub-steps of ``program`` at step ``step`` from ``level``, with float levels on the τ axis.

        The letters, models, directions and their order are the program's own
        (:meth:`ivmixed.program.Program.substeps`); each "go" letter moves Δ = T // N down the τ axis and each
        "back" letter Δ up, levels clamped to [0, T], exactly as the integer plan of the ᾱ table. With ``grid``
        (the N levels of :meth:`grid_levels`, ``grid[step] == level``) each letter moves to the neighbouring grid
        level instead: "go" from grid[m] to grid[m + 1] (0 past the last), "back" to grid[m − 1] (T above the first).
        """
        from dataclasses import replace

        from .program import Direction

        plan = program.substeps(step, 0, num_steps, self.num_train_timesteps)
        delta = self.num_train_timesteps // num_steps
        top = float(self.num_train_timesteps)
        if grid is not None:
            grid = [float(g) for g in grid]
            if len(grid) != num_steps or grid[step] != float(level):
                raise ValueError(f"grid must hold the {num_steps} levels of the standard scheduler with grid[{step}] == {level!r}")

        def at(offset: int) -> float:
            if grid is None:
                return min(top, max(0.0, level + offset * delta))
            m = step - offset  # "go" (offset − 1) is one grid step further on
            return 0.0 if m >= num_steps else (top if m < 0 else grid[m])

        offset, out = 0, []
        for sub in plan:
            t_from = at(offset)
            offset += -1 if sub.direction == Direction.GO else 1
            out.append(replace(sub, t_from=t_from, t_to=at(offset)))
        return tuple(out)


def split_prediction(out: torch.Tensor, x: torch.Tensor, level, schedule, prediction_type: str | None = None):
    """Convert a network output at ``(x, level)`` to the pair (x̂0, ε̂) with x = a·x̂0 + s·ε̂.

    ``prediction_type`` (default: the schedule's) is what the network predicts:

    - ``epsilon``: x̂0 = (x − s·ε̂) / a.
    - ``sample``: ε̂ = (x − a·x̂0) / s.
    - ``v_prediction`` (Salimans & Ho, 2022; VP only, a² + s² = 1): x̂0 = a·x − s·v, ε̂ = s·x + a·v.
    - ``flow_prediction``, the velocity v = ε − x0 of rectified flow (a + s = 1): x̂0 = x − s·v, ε̂ = x + a·v.
    """
    prediction_type = prediction_type or schedule.prediction_type
    a, s = schedule.coefficients(level)
    if prediction_type == "epsilon":
        return (x - s * out) / a, out
    if prediction_type == "sample":
        return out, (x - a * out) / s
    if prediction_type == "v_prediction":
        return a * x - s * out, s * x + a * out
    if prediction_type == "flow_prediction":
        return x - s * out, x + a * out
    raise ValueError(f"unknown prediction type {prediction_type!r}; expected one of {', '.join(PREDICTION_TYPES)}")


def deterministic_step(out: torch.Tensor, x: torch.Tensor, t_from, t_to, schedule) -> torch.Tensor:
    """Move ``x`` from level ``t_from`` to ``t_to`` with the network output ``out`` at ``(x, t_from)``.

    ``out`` is what the score models on ``schedule`` return (``schedule.prediction_type``): ε on the ᾱ table,
    the flow velocity on a :class:`FlowSchedule`. The step is x' = a_to·x̂0 + s_to·ε̂ with (x̂0, ε̂) from
    :func:`split_prediction`: DDIM (:func:`ddim_step`, computed operation for operation as diffusers does) on the
    ᾱ table, the Euler step of ``FlowMatchEulerDiscreteScheduler`` on a flow schedule. A higher ``t_to`` inverts.
    """
    if isinstance(schedule, NoiseSchedule) and schedule.prediction_type == "epsilon":
        return ddim_step(out, x, t_from, t_to, schedule)
    x0, eps = split_prediction(out, x, t_from, schedule)
    a_to, s_to = schedule.coefficients(t_to)
    return a_to * x0 + s_to * eps


def ddim_step(eps: torch.Tensor, x: torch.Tensor, t_from: int, t_to: int, schedule: NoiseSchedule) -> torch.Tensor:
    """One deterministic DDIM move of ``x`` from level ``t_from`` to level ``t_to`` with the noise estimate ``eps``.

    Denoises when ``t_to < t_from`` (``DDIMScheduler.step`` with η = 0) and inverts when ``t_to > t_from``
    (``DDIMInverseScheduler.step``); the formulas are the same, only the direction differs. ``eps`` must be
    the estimate at ``(x, t_from)``. Levels below 0 use ``schedule.final_alpha_cumprod``.
    """
    # 1. ᾱ at both ends, as 0-dim float32 tensors (the arithmetic below mirrors diffusers' DDIM schedulers
    #    operation for operation, so the results agree to the last bit on the same inputs)
    alpha_prod_from = schedule.alpha_bar(t_from)
    alpha_prod_to = schedule.alpha_bar(t_to)
    beta_prod_from = 1 - alpha_prod_from
    # 2. predicted x_0, formula (12): x0 = (x_t - sqrt(1 - ᾱ_t) ε) / sqrt(ᾱ_t)
    x0 = (x - beta_prod_from ** (0.5) * eps) / alpha_prod_from ** (0.5)
    # 3. "direction pointing to x_t", formula (12) with σ_t = 0: sqrt(1 - ᾱ_to) ε
    direction = (1 - alpha_prod_to) ** (0.5) * eps
    # 4. x at the target level: sqrt(ᾱ_to) x0 + direction
    return alpha_prod_to ** (0.5) * x0 + direction


def add_noise(x: torch.Tensor, t_from, t_to, schedule, generator: torch.Generator | None) -> torch.Tensor:
    """Move ``x`` up from level ``t_from`` to ``t_to`` (``t_to >= t_from``) with fresh Gaussian noise (the letter R).

    x' = (a_to / a_from)·x + sqrt(s_to² − (a_to / a_from)²·s_from²)·z,  z ~ N(0, I) drawn from ``generator``:
    the forward transition q(x_to | x_from) of x_t = a_t·x0 + s_t·ε. On the ᾱ table this is
    x' = sqrt(ᾱ_to / ᾱ_from) x + sqrt(1 − ᾱ_to / ᾱ_from) z (DDPM, Ho et al. 2020, eq. (4) composed over the levels).
    """
    if t_to < t_from:
        raise ValueError(f"add_noise only adds noise: got t_from={t_from} > t_to={t_to}; use ddim_step to denoise")
    device = generator.device if generator is not None else x.device
    if isinstance(schedule, NoiseSchedule):
        ratio = (schedule.alpha_bar(t_to) / schedule.alpha_bar(t_from)).item()
        z = torch.randn(x.shape, generator=generator, device=device, dtype=torch.float32).to(x.device, x.dtype)
        return ratio**0.5 * x + max(0.0, 1.0 - ratio) ** 0.5 * z
    z = torch.randn(x.shape, generator=generator, device=device, dtype=torch.float32).to(x.device, x.dtype)
    if t_to == t_from:  # no move (also at the pure-noise end of a flow schedule, where a = 0)
        return x
    a_from, s_from = (c.item() for c in schedule.coefficients(t_from))
    a_to, s_to = (c.item() for c in schedule.coefficients(t_to))
    ratio = a_to / a_from
    return ratio * x + max(0.0, s_to**2 - ratio**2 * s_from**2) ** 0.5 * z


def fold_frames(x: torch.Tensor) -> torch.Tensor:
    """Video latents ``(B, C, F, H, W)`` -> one image per frame ``(B·F, C, H, W)``, frame index fastest."""
    b, c, f, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)


def unfold_frames(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Inverse of :func:`fold_frames`: ``(B·F, C, H, W)`` -> ``(B, C, F, H, W)``."""
    bf, c, h, w = x.shape
    if bf % num_frames:
        raise ValueError(f"cannot unfold {bf} images into clips of {num_frames} frames")
    return x.reshape(bf // num_frames, num_frames, c, h, w).permute(0, 2, 1, 3, 4)
