"""The interpreter: runs any sampling program with an image and a video score model.

One loop for every program. For each step i at grid timestep t of the VDM's standard scheduler it
runs the zigzag the program asks for at step i (the planned sub-steps of
:meth:`ivmixed.program.Program.substeps`, each a pure primitive of :mod:`ivmixed.steps`), then the
standard step of the VDM's own diffusers scheduler at guidance ω. No device, dtype or model id
lives here: they follow the tensors and the score models the caller passes in.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from .errors import NonFiniteLatents, SamplingFailed
from .guidance import ScoreModel, conditional_half, guided, skips_unconditional
from .program import LETTERS, Direction, Primitive, Program, Role, SubStep, check_substeps
from .schedules import GuidanceTable
from .steps import FlowSchedule, NoiseSchedule, add_noise, deterministic_step, fold_frames, unfold_frames

__all__ = ["SubStepEvent", "NonFiniteLatents", "SamplingFailed", "run_program"]


@dataclass(frozen=True)
class SubStepEvent:
    """One executed sub-step, as reported to the ``callback``.

    ``substep`` is the index inside the step's zigzag; the standard step is reported with
    ``letter="S"``, ``model="vdm"``, ``direction="go"``, ``substep`` equal to the zigzag's length and
    ``t_to`` the next grid timestep (where the next step starts; the scheduler decides the level it
    actually lands on, e.g. diffusers' DDIM with "linspace" spacing moves to t − T//N).
    ``scale`` is the signed guidance scale used (negative on inversion sub-steps; 0 for R).
    """

    step: int
    substep: int
    letter: str
    model: Role | None
    direction: Direction
    t_from: int
    t_to: int
    scale: float


def _check_finite(x: torch.Tensor, event: SubStepEvent) -> None:
    if not bool(torch.isfinite(x).all()):
        what = "the standard step" if event.letter == "S" else f"sub-step {event.substep} ('{event.letter}'"
        what += "" if event.letter == "S" else f", {event.direction} {event.t_from}->{event.t_to})"
        raise NonFiniteLatents(
            f"NaN/Inf in the latents after step {event.step}, {what}. "
            "Common causes: fp16 overflow (try --dtype bf16 or fp32), a guidance scale that is too large, "
            "or a model that does not match the noise schedule."
        )


def _accepts_generator(scheduler) -> bool:
    """Whether ``scheduler.step`` takes a ``generator`` (multistep flow schedulers such as UniPC do not)."""
    try:
        return "generator" in inspect.signature(scheduler.step).parameters
    except (TypeError, ValueError):
        return True


@torch.no_grad()
def run_program(
    program: Program,
    *,
    idm: ScoreModel | None,
    vdm: ScoreModel,
    scheduler: Any,
    latents: torch.Tensor,
    idm_cond: Any,
    vdm_cond: Any,
    num_steps: int,
    guidance: float,
    zigzag: GuidanceTable | None = None,
    generator: torch.Generator | None = None,
    zigzag_schedule: NoiseSchedule | FlowSchedule | None = None,
    substeps: str = "delta",
    standard_step_on_frames: bool = False,
    callback: Callable[[SubStepEvent], None] | None = None,
    progress: bool = True,
    check_finite: bool = True,
) -> torch.Tensor:
    """Sample with ``program`` and return the final latents ``(B, C, F, H, W)``.

    Args:
        program: the sampling program (see :func:`ivmixed.parse`).
        idm, vdm: score models ``eps(x, t, cond)`` on video latents (the IDM folds frames itself).
            ``idm`` may be None for programs that never use the letter I.
        scheduler: the VDM's diffusers scheduler for the standard step. It is configured here with
            ``set_timesteps(num_steps)``; pass a fresh one per run (multistep schedulers keep history).
        latents: initial noise; multiplied by ``scheduler.init_noise_sigma`` as diffusers pipelines do.
        idm_cond, vdm_cond: conditioning for the doubled batch ``[uncond; cond]`` of each model.
        num_steps: N, the number of standard steps. The zigzag sub-step size is Δ = T // N (see ``substeps``).
        guidance: ω, the classifier-free guidance scale of the standard step. At ω = 1 the standard step runs the
            conditional half alone (ε_u + 1·(ε_c − ε_u) = ε_c: one evaluation, as in diffusers' pipelines) where
            the conditioning can be halved (:func:`~ivmixed.guidance.skips_unconditional`).
        zigzag: guidance ramps of the zigzag sub-steps (default: 4 everywhere).
        generator: the run's generator, for R sub-steps and stochastic standard steps.
        zigzag_schedule: the schedule the zigzag walks on (default: the scheduler's ᾱ table); a
            :class:`~ivmixed.steps.FlowSchedule` for flow-matching models, whose score models return the
            flow velocity and whose levels are floats on its τ axis.
        substeps: ``"delta"`` (default): each sub-step moves Δ = T // N; ``"grid"``: each moves to the
            neighbouring timestep of the scheduler's grid (t_i → t_{i+1} → …, 0 past the last one), so that the
            zigzag visits only levels the standard steps visit (few-step grids, grids with an offset).
        standard_step_on_frames: call ``scheduler.step`` on latents folded to (B·F, C, H, W).
        callback: receives a :class:`SubStepEvent` after every sub-step and standard step.
        progress: show a tqdm progress bar over the steps.
        check_finite: stop with :class:`NonFiniteLatents` as soon as NaN/Inf appears.

    An exception raised by a score model, the scheduler or the callback while sampling is re-raised as
    :class:`SamplingFailed` naming the step and sub-step (the original is its ``__cause__``).
    """
    substeps = check_substeps(substeps)
    schedule = zigzag_schedule or NoiseSchedule.from_scheduler(scheduler)
    scales = (zigzag or GuidanceTable()).build(num_steps)
    models = {Role.IDM: (idm, idm_cond), Role.VDM: (vdm, vdm_cond)}

    scheduler.set_timesteps(num_steps, device=latents.device)
    timesteps = [int(t) for t in scheduler.timesteps]
    if isinstance(schedule, FlowSchedule) and hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(0)  # as flow pipelines do: rounded grid timesteps may repeat
    levels = schedule.grid_levels(scheduler)
    grid = levels if substeps == "grid" else None
    plans = [schedule.substeps(program, i, level, num_steps, grid=grid) for i, level in enumerate(levels)]
    step_kwargs = {"generator": generator} if _accepts_generator(scheduler) else {}
    if idm is None and any(sub.model is Role.IDM for plan in plans for sub in plan):
        raise ValueError(
            f"program {program} uses the image model (letter {Role.IDM.letters}) but this backbone has no image model"
        )
    x = latents * scheduler.init_noise_sigma
    standard_cond = conditional_half(vdm_cond) if skips_unconditional(guidance, vdm_cond) else None

    for i, t in enumerate(tqdm(timesteps, desc=f"sampling {program}", disable=not progress, leave=False)):
        plan: tuple[SubStep, ...] = plans[i]
        where = "the standard step"
        try:
            for sub in plan:
                where = f"sub-step {sub.index} ('{sub.letter}', {sub.direction} {sub.t_from}->{sub.t_to})"
                letter = LETTERS[sub.letter]
                if letter.primitive(sub.direction) is Primitive.ADD_NOISE:  # fresh Gaussian noise, no model
                    scale = 0.0
                    x = add_noise(x, sub.t_from, sub.t_to, schedule, generator)
                else:  # a DDIM move, down (denoise) or up (inversion), with the letter's model
                    model, cond = models[letter.role]
                    scale = scales.scale(letter.role, sub.direction, i)
                    out = guided(model, x, schedule.timestep(sub.t_from), cond, scale)
                    x = deterministic_step(out, x, sub.t_from, sub.t_to, schedule)
                event = SubStepEvent(i, sub.index, sub.letter, sub.model, sub.direction, sub.t_from, sub.t_to, scale)
                if check_finite:
                    _check_finite(x, event)
                if callback is not None:
                    callback(event)

            # the standard step of the VDM, through its own scheduler
            where = "the standard step"
            x_in = scheduler.scale_model_input(x, t)
            eps = guided(vdm, x_in, t, vdm_cond, guidance) if standard_cond is None else vdm(x_in, t, standard_cond)
            if standard_step_on_frames:
                num_frames = x.shape[2]
                x = unfold_frames(scheduler.step(fold_frames(eps), t, fold_frames(x), **step_kwargs).prev_sample, num_frames)
            else:
                x = scheduler.step(eps, t, x, **step_kwargs).prev_sample
            t_next = timesteps[i + 1] if i + 1 < len(timesteps) else 0
            event = SubStepEvent(i, len(plan), "S", Role.VDM, Direction.GO, t, t_next, float(guidance))
            if check_finite:
                _check_finite(x, event)
            if callback is not None:
                callback(event)
        except (NonFiniteLatents, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise SamplingFailed(f"sampling failed at step {i} (t = {t}), {where}: {type(exc).__name__}: {exc}") from exc
    return x
