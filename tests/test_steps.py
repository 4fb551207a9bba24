"""Laws of the step primitives: DDIM round trip, agreement with diffusers' own schedulers, re-noising statistics."""

import pytest
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler

from ivmixed.steps import NoiseSchedule, add_noise, ddim_step, fold_frames, unfold_frames

SD_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000, clip_sample=False)


def sd_schedule(set_alpha_to_one=False):
    return NoiseSchedule.from_scheduler(DDIMScheduler(**SD_BETAS, set_alpha_to_one=set_alpha_to_one))


@pytest.mark.parametrize("t_from,t_to", [(999, 979), (500, 480), (40, 20), (20, 0), (999, 0), (300, 299)])
def test_denoise_then_invert_with_the_same_eps_returns_x(t_from, t_to):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, 8, 8, generator=g)
    eps = torch.randn(x.shape, generator=g)
    schedule = sd_schedule()
    down = ddim_step(eps, x, t_from, t_to, schedule)
    back = ddim_step(eps, down, t_to, t_from, schedule)
    assert down.dtype == torch.float32
    assert (back - x).abs().max().item() <= 1e-5
    assert (down - x).abs().max().item() > 1e-3  # it really moved


@pytest.mark.parametrize("set_alpha_to_one", [False, True])
@pytest.mark.parametrize("num_steps", [50, 25, 7])
def test_denoise_step_equals_diffusers_ddim(set_alpha_to_one, num_steps):
    scheduler = DDIMScheduler(**SD_BETAS, set_alpha_to_one=set_alpha_to_one, timestep_spacing="linspace", steps_offset=1)
    scheduler.set_timesteps(num_steps)
    schedule = NoiseSchedule.from_scheduler(scheduler)
    delta = 1000 // num_steps
    g = torch.Generator().manual_seed(1)
    for t in [int(t) for t in scheduler.timesteps]:  # includes t = 0, whose target level is below 0
        x = torch.randn(1, 4, 2, 4, 4, generator=g)
        eps = torch.randn(x.shape, generator=g)
        ours = ddim_step(eps, x, t, t - delta, schedule)
        theirs = scheduler.step(eps, t, x).prev_sample
        assert torch.equal(ours, theirs), f"t={t}"


@pytest.mark.parametrize("set_alpha_to_one", [False, True])
def test_inversion_step_equals_diffusers_ddim_inverse(set_alpha_to_one):
    num_steps = 50
    inverse = DDIMInverseScheduler(**SD_BETAS, set_alpha_to_one=set_alpha_to_one)
    inverse.set_timesteps(num_steps)
    schedule = NoiseSchedule(
        alphas_cumprod=inverse.alphas_cumprod, final_alpha_cumprod=float(inverse.initial_alpha_cumprod)
    )
    g = torch.Generator().manual_seed(2)
    # DDIMInverseScheduler.step(eps, t, x) moves x from level t - T//N (ᾱ "initial" below 0) up to t
    for t in [0, 19, 20, 21, 500, 999]:
        x = torch.randn(1, 4, 2, 4, 4, generator=g)
        eps = torch.randn(x.shape, generator=g)
        ours = ddim_step(eps, x, t - 20, t, schedule)
        theirs = inverse.step(eps, t, x).prev_sample
        assert torch.equal(ours, theirs), f"t={t}"


def test_level_below_zero_uses_final_alpha_cumprod():
    one = sd_schedule(set_alpha_to_one=True)
    zero = sd_schedule(set_alpha_to_one=False)
    assert one.alpha_bar(-1).item() == 1.0
    assert zero.alpha_bar(-5).item() == pytest.approx(zero.alphas_cumprod[0].item())
    with pytest.raises(ValueError, match="outside the schedule"):
        zero.alpha_bar(1000)


def test_fp16_latents_stay_fp16():
    x = torch.randn(1, 4, 2, 4, 4).half()
    out = ddim_step(torch.randn_like(x), x, 500, 480, sd_schedule())
    assert out.dtype == torch.float16


def test_add_noise_matches_forward_marginal():
    schedule = sd_schedule()
    x = torch.full((200_000,), 0.7)
    g = torch.Generator().manual_seed(3)
    out = add_noise(x, 200, 600, schedule, g)
    ratio = (schedule.alpha_bar(600) / schedule.alpha_bar(200)).item()
    assert out.mean().item() == pytest.approx(ratio**0.5 * 0.7, abs=0.01)
    assert out.var().item() == pytest.approx(1 - ratio, abs=0.01)


def test_add_noise_is_driven_by_the_generator():
    schedule = sd_schedule()
    x = torch.zeros(1, 4, 2, 4, 4)
    a = add_noise(x, 100, 120, schedule, torch.Generator().manual_seed(5))
    b = add_noise(x, 100, 120, schedule, torch.Generator().manual_seed(5))
    c = add_noise(x, 100, 120, schedule, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(add_noise(x, 100, 100, schedule, torch.Generator().manual_seed(5)), x)
    with pytest.raises(ValueError, match="only adds noise"):
        add_noise(x, 120, 100, schedule, None)


def test_fold_unfold_round_trip_and_order():
    x = torch.arange(2 * 3 * 4 * 2 * 2, dtype=torch.float32).reshape(2, 3, 4, 2, 2)
    folded = fold_frames(x)
    assert folded.shape == (8, 3, 2, 2)
    assert torch.equal(folded[5], x[1, :, 1])  # clip 1, frame 1: frame index fastest
    assert torch.equal(unfold_frames(folded, 4), x)
    with pytest.raises(ValueError, match="cannot unfold"):
        unfold_frames(folded, 3)
