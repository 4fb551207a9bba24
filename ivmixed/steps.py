"""Pure step primitives of the sampler algebra: the DDIM step (both directions) and Gaussian re-noising.

Notation (variable name -> symbol in Song et al., "Denoising Diffusion Implicit Models", 2020):

    alpha_bar(t)        -> ᾱ_t (``alphas_cumprod[t]``)
    a_t = sqrt(ᾱ_t)     -> sqrt(α_t) in the DDIM paper
    s_t = sqrt(1 - ᾱ_t)
    eps                 -> ε_θ(x_t, t)
    x0                  -> "predicted x_0", formula (12)

Nothing here holds state: the noise schedule, the levels and the random generator are arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["NoiseSchedule", "ddim_step", "add_noise", "fold_frames", "unfold_frames"]


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


def add_noise(x: torch.Tensor, t_from: int, t_to: int, schedule: NoiseSchedule, generator: torch.Generator | None) -> torch.Tensor:
    """Move ``x`` up from level ``t_from`` to ``t_to`` (``t_to >= t_from``) with fresh Gaussian noise (the letter R).

    x' = sqrt(ᾱ_to / ᾱ_from) x + sqrt(1 - ᾱ_to / ᾱ_from) z,  z ~ N(0, I) drawn from ``generator``
    (the forward transition q(x_to | x_from) of DDPM, Ho et al. 2020, eq. (4) composed over the levels).
    """
    if t_to < t_from:
        raise ValueError(f"add_noise only adds noise: got t_from={t_from} > t_to={t_to}; use ddim_step to denoise")
    ratio = (schedule.alpha_bar(t_to) / schedule.alpha_bar(t_from)).item()
    device = generator.device if generator is not None else x.device
    z = torch.randn(x.shape, generator=generator, device=device, dtype=torch.float32).to(x.device, x.dtype)
    return ratio**0.5 * x + max(0.0, 1.0 - ratio) ** 0.5 * z


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
