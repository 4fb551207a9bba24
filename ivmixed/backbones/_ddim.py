"""A deterministic DDIM standard step without diffusers, for backbones that need nothing else from it (the toy world).

Importing diffusers costs seconds (it imports torch's compiler stack); the toy world runs a whole program in
a fraction of that. :class:`DDIM` is the subset of ``diffusers.DDIMScheduler`` the sampler uses — a linear β
table, ``set_timesteps`` with ``"trailing"`` or ``"linspace"`` spacing, and the η = 0 ε-prediction ``step`` — written
with the same operations in the same order, so its tables, grids and steps equal diffusers' bit for bit
(``tests/test_cli_refusals.py`` compares them).

In the symbols of Song et al. (2021), eq. (12) with σ = 0, for grid timesteps t → t' = t − T//N:

    x̂₀ = (x_t − √(1 − ᾱ_t) · ε) / √ᾱ_t,    x_t' = √ᾱ_t' · x̂₀ + √(1 − ᾱ_t') · ε,

with ᾱ_t' = ``final_alpha_cumprod`` when t' < 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch

__all__ = ["DDIM", "DDIMOutput"]


@dataclass
class DDIMOutput:
    """What ``DDIM.step`` returns (the fields of diffusers' ``DDIMSchedulerOutput``)."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class DDIM:
    """Deterministic DDIM on a linear β table (``beta_schedule="linear"``, ``clip_sample=False``, ε-prediction).

    Args:
        num_train_timesteps: T, the length of the ᾱ table.
        beta_start, beta_end: the ends of the linear β table (float32, as diffusers builds it).
        set_alpha_to_one: ᾱ below level 0 is 1 (else ᾱ_0).
        timestep_spacing: ``"trailing"`` (the grid starts at T − 1 and steps by T/N) or ``"linspace"`` (N levels
            evenly from T − 1 to 0, rounded).
    """

    order = 1

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        *,
        set_alpha_to_one: bool = True,
        timestep_spacing: str = "trailing",
    ):
        if timestep_spacing not in ("trailing", "linspace"):
            raise ValueError(f"timestep_spacing must be 'trailing' or 'linspace', got {timestep_spacing!r}")
        self.config = SimpleNamespace(
            num_train_timesteps=num_train_timesteps,
            beta_start=beta_start,
            beta_end=beta_end,
            beta_schedule="linear",
            clip_sample=False,
            set_alpha_to_one=set_alpha_to_one,
            steps_offset=0,
            timestep_spacing=timestep_spacing,
            prediction_type="epsilon",
        )
        self.betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.final_alpha_cumprod = torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0]
        self.init_noise_sigma = 1.0
        self.num_inference_steps: int | None = None
        self.timesteps = torch.arange(num_train_timesteps - 1, -1, -1, dtype=torch.int64)

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        return sample

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        import numpy as np

        T = self.config.num_train_timesteps
        if num_inference_steps > T:
            raise ValueError(f"num_inference_steps ({num_inference_steps}) cannot be larger than the {T} training timesteps")
        self.num_inference_steps = num_inference_steps
        if self.config.timestep_spacing == "linspace":
            timesteps = np.linspace(0, T - 1, num_inference_steps).round()[::-1].copy().astype(np.int64)
        else:
            step_ratio = T / num_inference_steps
            timesteps = np.round(np.arange(T, 0, -step_ratio)).astype(np.int64)
            timesteps -= 1
        self.timesteps = torch.from_numpy(timesteps).to(device)

    def step(
        self,
        model_output: torch.Tensor,
        timestep,
        sample: torch.Tensor,
        eta: float = 0.0,
        use_clipped_model_output: bool = False,
        generator: torch.Generator | None = None,
        variance_noise: torch.Tensor | None = None,
        return_dict: bool = True,
    ):
        """One DDIM step from grid timestep ``timestep`` to ``timestep − T//N`` (η = 0: no noise is drawn)."""
        if self.num_inference_steps is None:
            raise ValueError("call set_timesteps before step")
        if eta != 0:
            raise ValueError(f"this DDIM is deterministic (eta = 0), got eta={eta}")
        prev_timestep = timestep - self.config.num_train_timesteps // self.num_inference_steps
        alpha_prod_t = self.alphas_cumprod[timestep]
        alpha_prod_t_prev = self.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else self.final_alpha_cumprod
        beta_prod_t = 1 - alpha_prod_t
        pred_original_sample = (sample - beta_prod_t ** (0.5) * model_output) / alpha_prod_t ** (0.5)
        pred_sample_direction = (1 - alpha_prod_t_prev) ** (0.5) * model_output
        prev_sample = alpha_prod_t_prev ** (0.5) * pred_original_sample + pred_sample_direction
        if not return_dict:
            return (prev_sample, pred_original_sample)
        return DDIMOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)
