"""Laws of the general schedule x = a·x0 + s·ε on rectified flow: Euler step, inversion, adapters, sub-step plan."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

import ivmixed
from ivmixed.steps import FlowSchedule, NoiseSchedule, add_noise, ddim_step, deterministic_step, split_prediction

SD_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000, clip_sample=False)


def _pair(seed, shape=(1, 4, 3, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0])
@pytest.mark.parametrize("num_steps", [50, 7])
def test_denoise_step_equals_diffusers_flow_match_euler(shift, num_steps):
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    scheduler.set_timesteps(num_steps)
    schedule = FlowSchedule.from_scheduler(scheduler)
    assert schedule.shift == shift
    levels = schedule.grid_levels(scheduler) + [0.0]  # the scheduler's last move goes to σ = 0
    g = torch.Generator().manual_seed(1)
    worst = 0.0
    for i, t in enumerate(scheduler.timesteps):
        x = torch.randn(1, 16, 2, 4, 4, generator=g)
        velocity = torch.randn(x.shape, generator=g)
        ours = deterministic_step(velocity, x, levels[i], levels[i + 1], schedule)
        theirs = scheduler.step(velocity, t, x).prev_sample
        # the same move written as a·x̂0 + s·ε̂ instead of x + dσ·v, with σ recomputed from the level: float32 rounding apart
        worst = max(worst, (ours - theirs).abs().max().item())
    assert worst <= 2e-6


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("t_from,t_to", [(1000.0, 980.0), (500.0, 480.0), (20.0, 0.0), (999.5, 0.25), (300.0, 300.0)])
def test_flow_denoise_then_invert_with_the_same_velocity_returns_x(shift, t_from, t_to):
    schedule = FlowSchedule(1000, shift)
    x, velocity = _pair(0)
    down = deterministic_step(velocity, x, t_from, t_to, schedule)
    back = deterministic_step(velocity, down, t_to, t_from, schedule)
    assert (back - x).abs().max().item() <= 1e-5
    moved = (down - x).abs().max().item()
    assert moved > 1e-3 if t_from != t_to else moved <= 1e-6


def test_flow_step_is_the_euler_step_of_the_velocity():
    schedule = FlowSchedule(1000, 3.0)
    x, velocity = _pair(4)
    ours = deterministic_step(velocity, x, 700.0, 640.0, schedule)
    euler = x + (schedule.sigma(640.0) - schedule.sigma(700.0)) * velocity
    assert (ours - euler).abs().max().item() <= 1e-6


def test_vp_deterministic_step_is_ddim_bit_for_bit():
    schedule = NoiseSchedule.from_scheduler(DDIMScheduler(**SD_BETAS))
    x, eps = _pair(2)
    for t_from, t_to in [(999, 979), (20, -1), (300, 320)]:
        assert torch.equal(deterministic_step(eps, x, t_from, t_to, schedule), ddim_step(eps, x, t_from, t_to, schedule))


@pytest.mark.parametrize(
    "schedule,level,kinds",
    [
        (NoiseSchedule.from_scheduler(DDIMScheduler(**SD_BETAS)), 640, ("epsilon", "v_prediction", "sample")),
        (FlowSchedule(1000, 3.0), 640.0, ("epsilon", "sample", "flow_prediction")),
        (FlowSchedule(1000, 1.0), 123.5, ("epsilon", "sample", "flow_prediction")),
    ],
)
def test_every_prediction_type_converts_to_the_same_x0_and_eps(schedule, level, kinds):
    x0, eps = _pair(3)
    a, s = schedule.coefficients(level)
    x = a * x0 + s * eps
    targets = {"epsilon": eps, "sample": x0, "v_prediction": a * eps - s * x0, "flow_prediction": eps - x0}
    for kind in kinds:
        got_x0, got_eps = split_prediction(targets[kind], x, level, schedule, kind)
        assert (got_x0 - x0).abs().max().item() <= 1e-4, kind
        assert (got_eps - eps).abs().max().item() <= 1e-4, kind
    with pytest.raises(ValueError, match="unknown prediction type 'velocity'"):
        split_prediction(eps, x, level, schedule, "velocity")


def test_flow_levels_follow_the_shift_and_the_scheduler_grid():
    schedule = FlowSchedule(1000, 3.0)
    assert schedule.sigma(0.0) == 0.0 and schedule.sigma(1000.0) == 1.0
    assert schedule.sigma(500.0) == pytest.approx(0.75)  # 3·0.5 / (1 + 2·0.5)
    for level in [0.0, 1.0, 333.3, 980.0, 1000.0]:
        assert schedule.level_of_sigma(schedule.sigma(level)) == pytest.approx(level, abs=1e-9)
    assert schedule.timestep(500.0) == pytest.approx(750.0)
    # Wan's own scheduler: UniPC on flow sigmas, evenly spaced before the shift
    unipc = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0, num_train_timesteps=1000)
    unipc.set_timesteps(10)
    levels = FlowSchedule.from_scheduler(unipc).grid_levels(unipc)
    # (UniPC lowers the first σ by 1e-6, which the shift turns into 0.003 on the level axis)
    np.testing.assert_allclose(levels, 1000 * np.linspace(1, 1 / 1000, 11)[:-1], atol=5e-3)
    with pytest.raises(ValueError, match="outside the flow schedule's axis"):
        schedule.sigma(1000.5)
    with pytest.raises(ValueError, match="positive number"):
        FlowSchedule(1000, 0.0)


def test_flow_plan_moves_delta_on_the_level_axis_with_the_programs_letters():
    schedule = FlowSchedule(1000, 3.0)
    program = ivmixed.parse("IV-IV")
    plan = schedule.substeps(program, 0, 1000.0, 50)
    integer_plan = program.substeps(0, 999, 50, 1000)
    assert [(s.letter, s.model, s.direction) for s in plan] == [(s.letter, s.model, s.direction) for s in integer_plan]
    assert [(s.t_from, s.t_to) for s in plan] == [(1000.0, 980.0), (980.0, 960.0), (960.0, 980.0), (980.0, 1000.0)]
    # clamped at both ends, like the integer plan
    low = schedule.substeps(program, 49, 10.5, 50)
    assert [(s.t_from, s.t_to) for s in low] == [(10.5, 0.0), (0.0, 0.0), (0.0, 0.0), (0.0, 10.5)]
    top = schedule.substeps(ivmixed.parse("RR-VV:nf"), 0, 990.0, 50)
    assert [(s.t_from, s.t_to) for s in top] == [(990.0, 1000.0), (1000.0, 1000.0), (1000.0, 1000.0), (1000.0, 990.0)]
    assert schedule.substeps(ivmixed.parse("origin"), 3, 500.0, 50) == ()


def test_flow_add_noise_matches_the_forward_marginal():
    schedule = FlowSchedule(1000, 3.0)
    x = torch.full((200_000,), 0.7)
    out = add_noise(x, 200.0, 600.0, schedule, torch.Generator().manual_seed(3))
    (a_from, s_from), (a_to, s_to) = schedule.coefficients(200.0), schedule.coefficients(600.0)
    ratio = (a_to / a_from).item()
    assert out.mean().item() == pytest.approx(ratio * 0.7, abs=0.01)
    assert out.var().item() == pytest.approx(s_to.item() ** 2 - ratio**2 * s_from.item() ** 2, abs=0.01)
    # x0 = 0.7 at level 200 lands where x0 = 0.7 would be noised to level 600: mean a_600·x0
    assert out.mean().item() == pytest.approx(a_to.item() * 0.7 / a_from.item(), abs=0.01)
    assert torch.equal(add_noise(x, 1000.0, 1000.0, schedule, torch.Generator().manual_seed(3)), x)
