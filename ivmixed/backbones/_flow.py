"""The sub-step plan of a program on a flow-matching backbone, as data and as text (``ivmixed explain --backbone wan``).

On a :class:`~ivmixed.steps.FlowSchedule` a zigzag moves Δ = T // N on the level axis τ (the unshifted training
time), and each level τ is the flow time σ(τ) = s·u / (1 + (s − 1)·u), u = τ / T, that the scheduler's shift s
gives it; the network is called at timestep σ·T. The standard steps sit on the scheduler's own grid. Nothing here
loads weights: the grid comes from a scheduler built from the model's scheduler config alone.
"""

from __future__ import annotations

from typing import Any

from ..program import NOISE_FIRST, Program, cost_words, guides_standard_step
from ..steps import FlowSchedule

__all__ = ["explain_flow", "format_flow_explain"]


def _r(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}") if value else 0.0


def explain_flow(
    program: Program,
    num_steps: int,
    num_frames: int,
    *,
    scheduler,
    schedule: FlowSchedule,
    backbone: str,
    latent_frames: int | None = None,
    source: str = "",
    show_steps: int | None = 3,
    substeps: str = "delta",
    guidance: float | None = None,
) -> dict[str, Any]:
    """The plan of ``program`` on a flow backbone as JSON-ready data (the keys of :func:`ivmixed.program.explain`
    plus the flow schedule, σ and network timestep of every level).

    ``scheduler`` is the backbone's standard-step scheduler (configured here with ``set_timesteps``). With
    ``latent_frames`` (a VAE that compresses time) the IDM's image evaluations count latent frames.
    """
    program.cost(num_steps, num_frames)  # validates
    # the image model sees one image per latent frame
    cost = program.cost(
        num_steps, num_frames if latent_frames is None else latent_frames, guided_standard_step=guides_standard_step(guidance)
    )
    scheduler.set_timesteps(num_steps)
    levels = schedule.grid_levels(scheduler)
    timesteps = [int(t) for t in scheduler.timesteps]
    shown = num_steps if show_steps is None else max(0, int(show_steps))
    forms: dict[str, int] = {}
    steps = []
    for i, level in enumerate(levels):
        form = program.form_at(i, num_steps)
        clause = program.clause_at(i, num_steps)
        label = str(form) + (":nf" if clause is not None and not form.is_origin and clause.order == NOISE_FIRST else "")
        forms[label] = forms.get(label, 0) + 1
        if i < shown:
            plan = []
            for sub in schedule.substeps(program, i, level, num_steps, grid=levels if substeps == "grid" else None):
                record = sub.as_dict()
                record.update(
                    t_from=_r(sub.t_from, 6),
                    t_to=_r(sub.t_to, 6),
                    sigma_from=_r(schedule.sigma(sub.t_from)),
                    sigma_to=_r(schedule.sigma(sub.t_to)),
                    timestep_from=_r(schedule.timestep(sub.t_from)),
                    timestep_to=_r(schedule.timestep(sub.t_to)),
                )
                plan.append(record)
            sigma_next = float(scheduler.sigmas[i + 1])
            steps.append(
                {
                    "step": i,
                    "t": timesteps[i],
                    "level": _r(level, 6),
                    "sigma": _r(float(scheduler.sigmas[i])),
                    "sigma_next": _r(sigma_next),
                    "form": str(form),
                    "order": None if form.is_origin else clause.order,
                    "substeps": plan,
                }
            )
    delta = schedule.num_train_timesteps // num_steps
    return {
        **({"substeps": "grid"} if substeps == "grid" else {}),
        **({"guidance": float(guidance)} if guidance is not None else {}),
        "program": str(program),
        "backbone": backbone,
        "schedule": "rectified flow",
        "scheduler": type(scheduler).__name__,
        "scheduler_source": source,
        "flow_shift": schedule.shift,
        "num_steps": num_steps,
        "num_frames": num_frames,
        "latent_frames": latent_frames,
        "num_train_timesteps": schedule.num_train_timesteps,
        "delta": delta,
        **cost.as_dict(),
        "cost": cost.as_dict(),
        "forms": forms,
        "steps": steps,
    }


def format_flow_explain(info: dict[str, Any]) -> str:
    """:func:`explain_flow`'s data as the text ``ivmixed explain --backbone wan`` prints."""
    n, cost, shift, big_t = info["num_steps"], info["cost"], info["flow_shift"], info["num_train_timesteps"]
    forms = ", ".join(f"{label} on {count} step{'s' if count != 1 else ''}" for label, count in info["forms"].items())
    frames = f"frames {info['num_frames']}"
    if info.get("latent_frames") is not None:
        frames += f" ({info['latent_frames']} latent frames)"
    lines = [
        f"program  {info['program']}",
        f"backbone {info['backbone']}: rectified flow x = (1 - sigma)*x0 + sigma*eps, standard step {info['scheduler']}"
        + (f"; {info['scheduler_source']}" if info.get("scheduler_source") else ""),
        f"steps    {n}, {frames}, "
        + (
            f"sub-steps on the grid (each moves to the neighbouring grid level; delta would be {info['delta']})"
            if info.get("substeps") == "grid"
            else f"sub-step delta = {big_t} // {n} = {info['delta']} on the level axis tau"
        ),
        f"levels   sigma(tau) = {shift:g}*u / (1 + {shift - 1:g}*u), u = tau / {big_t}; the network sees timestep sigma*{big_t}",
        f"forms    {forms}",
        f"cost     {cost['idm_image_evals']} IDM image evaluations"
        + (" (one per latent frame)" if info.get("latent_frames") is not None else "")
        + f", {cost['vdm_clip_evals']} VDM clip evaluations per video ({cost_words(info.get('guidance'))})",
    ]
    if info["steps"]:
        lines += ["", "step  level (sigma)       form      sub  letter  model  direction  tau            sigma              timestep"]
        for s in info["steps"]:
            head = f"{s['step']:>4}  {s['level']:>7g} ({s['sigma']:<6g})  {s['form']:<8}"
            for index, sub in enumerate(s["substeps"]):
                model = sub["model"] or "-"
                tau = f"{sub['t_from']:g} -> {sub['t_to']:g}"
                sigma = f"{sub['sigma_from']:g} -> {sub['sigma_to']:g}"
                timestep = f"{sub['timestep_from']:g} -> {sub['timestep_to']:g}"
                lines.append(f"{head}  {index:>3}  {sub['letter']:<6}  {model:<5}  {sub['direction']:<9}  {tau:<13}  {sigma:<17}  {timestep}")
                head = " " * len(head)
            lines.append(
                f"{head}  std  V       vdm    go         the standard step at timestep {s['t']}: sigma {s['sigma']:g} -> {s['sigma_next']:g}"
            )
        lines.append(f"(the first {len(info['steps'])} of {n} steps; grid: the scheduler's own)")
    return "\n".join(lines)
