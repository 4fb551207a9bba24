"""The interpreter: cost equals counted evaluations, the sub-step plan it executes, guidance signs, NaN stops."""

import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from ivmixed import parse
from ivmixed.guidance import ImageOnVideo, cfg_combine, guided
from ivmixed.sampler import NonFiniteLatents, run_program
from ivmixed.schedules import GuidanceTable, Ramp
from ivmixed.steps import NoiseSchedule, ddim_step

SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False)


def ddim():
    return DDIMScheduler(**SD, timestep_spacing="linspace", steps_offset=1)


class Counting:
    """A linear fake score model that counts the rows it is asked to evaluate."""

    def __init__(self, gain=0.05, shift=0.3):
        self.rows = 0
        self.calls = []
        self.gain, self.shift = gain, shift

    def __call__(self, x, t, cond):
        self.rows += x.shape[0]
        self.calls.append((int(t), x.shape[0]))
        # cond is a (rows,) tensor: 0 for the unconditional half, 1 for the conditional half
        c = cond.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        return self.gain * x + self.shift * c


def image_fake():
    counter = Counting(gain=0.04, shift=-0.2)
    return counter, ImageOnVideo(counter)


def run(program, *, frames=3, steps=6, batch=1, scheduler=None, idm=None, vdm=None, **kw):
    torch.manual_seed(0)
    latents = torch.randn(batch, 4, frames, 4, 4)
    vcond = torch.tensor([0.0] * batch + [1.0] * batch)
    icond = vcond.repeat_interleave(frames)
    return run_program(
        parse(program),
        idm=idm,
        vdm=vdm,
        scheduler=scheduler or ddim(),
        latents=latents,
        idm_cond=icond,
        vdm_cond=vcond,
        num_steps=steps,
        guidance=7.5,
        progress=False,
        **kw,
    )


@pytest.mark.parametrize(
    "text",
    ["origin", "R-I", "RR-II", "R-V", "RR-VV", "I-I", "II-II", "V-V", "VV-VV", "IV-IV", "VI-VI", "II-VV",
     "IV-IV:nf", "IV-IV+VV-VV@i%3=2", "VV-VV@66.7%", "IV-IV@1..3"],
)
@pytest.mark.parametrize("frames,steps", [(3, 6), (2, 7)])
def test_cost_equals_counted_evaluations(text, frames, steps):
    counter_i, idm = image_fake()
    vdm = Counting()
    run(text, frames=frames, steps=steps, idm=idm, vdm=vdm, generator=torch.Generator().manual_seed(0))
    cost = parse(text).cost(num_steps=steps, num_frames=frames)
    assert counter_i.rows == cost.idm_image_evals
    assert vdm.rows == cost.vdm_clip_evals


def test_paper_costs():
    assert parse("IV-IV").cost(num_steps=50, num_frames=16).as_dict() == {"idm_image_evals": 3200, "vdm_clip_evals": 300}
    assert parse("origin").cost(num_steps=50, num_frames=16).as_dict() == {"idm_image_evals": 0, "vdm_clip_evals": 100}


def test_events_of_iv_iv_denoise_first_match_the_released_order():
    events = []
    _, idm = image_fake()
    run("IV-IV", steps=50, idm=idm, vdm=Counting(), callback=events.append)
    first = [(e.letter, e.model, e.direction, e.t_from, e.t_to, e.scale) for e in events if e.step == 0]
    assert first == [
        ("I", "idm", "go", 999, 979, 4.0),
        ("V", "vdm", "go", 979, 959, 4.0),
        ("I", "idm", "back", 959, 979, -4.0),
        ("V", "vdm", "back", 979, 999, -4.0),
        ("S", "vdm", "go", 999, 979, 7.5),
    ]
    last = [(e.letter, e.t_from, e.t_to) for e in events if e.step == 49]
    assert last == [("I", 0, 0), ("V", 0, 0), ("I", 0, 0), ("V", 0, 0), ("S", 0, 0)]  # clamped at 0
    assert [e.substep for e in events if e.step == 3] == [0, 1, 2, 3, 4]


def test_noise_first_goes_up_then_down():
    events = []
    _, idm = image_fake()
    run("IV-IV:nf", steps=50, idm=idm, vdm=Counting(), callback=events.append)
    first = [(e.letter, e.direction, e.t_from, e.t_to, e.scale) for e in events if e.step == 1]
    assert first == [
        ("I", "back", 979, 999, -4.0),
        ("V", "back", 999, 999, -4.0),  # clamped at T - 1
        ("I", "go", 999, 999, 4.0),
        ("V", "go", 999, 979, 4.0),
        ("S", "go", 979, 958, 7.5),
    ]


def test_zigzag_guidance_table_reaches_each_sub_step():
    events = []
    _, idm = image_fake()
    table = GuidanceTable(i_go=Ramp("linear", (6, 2)), i_back=Ramp("constant", (1,)), v_go=Ramp("constant", (3,)), v_back=Ramp("constant", (5,)))
    run("IV-IV", steps=5, idm=idm, vdm=Counting(), zigzag=table, callback=events.append)
    at2 = [e.scale for e in events if e.step == 2]
    assert at2 == [4.0, 3.0, -1.0, -5.0, 7.5]


def test_guided_is_one_batched_call_with_signed_scale():
    model = Counting(gain=0.0, shift=1.0)
    x = torch.zeros(2, 1, 1, 1, 1)
    cond = torch.tensor([0.0, 0.0, 1.0, 1.0])
    out = guided(model, x, 10, cond, -4.0)
    assert len(model.calls) == 1 and model.calls[0] == (10, 4)
    assert torch.allclose(out, torch.full_like(x, -4.0))  # ε_u − 4 (ε_c − ε_u) with ε_u = 0, ε_c = 1
    assert torch.equal(cfg_combine(torch.zeros(1), torch.ones(1), 7.5), torch.tensor([7.5]))


def test_inversion_sign_matters():
    _, idm = image_fake()
    base = run("IV-IV", idm=idm, vdm=Counting())
    _, idm = image_fake()
    flipped = GuidanceTable(i_back=Ramp("constant", (-4,)), v_back=Ramp("constant", (-4,)))
    other = run("IV-IV", idm=idm, vdm=Counting(), zigzag=flipped)
    assert (base - other).abs().max() > 1e-3


def test_zigzag_with_exact_round_trip_model_returns_to_origin():
    """A model whose ε does not depend on x or t makes every denoise/invert pair an exact round trip."""

    class Constant:
        def __call__(self, x, t, cond):
            return torch.full_like(x, 0.25)

    origin = run("origin", vdm=Constant())
    zig = run("VV-VV", vdm=Constant())
    assert torch.allclose(origin, zig, atol=1e-5)


def test_r_substeps_follow_the_generator():
    a = run("RR-VV", vdm=Counting(), generator=torch.Generator().manual_seed(1))
    b = run("RR-VV", vdm=Counting(), generator=torch.Generator().manual_seed(1))
    c = run("RR-VV", vdm=Counting(), generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_origin_is_plain_ddim_sampling():
    vdm = Counting()
    ours = run("origin", vdm=vdm, steps=8)
    torch.manual_seed(0)
    x = torch.randn(1, 4, 3, 4, 4)
    scheduler = ddim()
    scheduler.set_timesteps(8)
    cond = torch.tensor([0.0, 1.0])
    for t in scheduler.timesteps:
        out = vdm(torch.cat([x, x]), t, cond)
        u, c = out.chunk(2)
        x = scheduler.step(u + 7.5 * (c - u), t, x).prev_sample
    assert torch.equal(ours, x)


def test_standard_step_on_frames_with_a_multistep_scheduler():
    """Folded standard steps equal a hand-written loop that folds, steps a stochastic multistep solver and unfolds."""
    config = {k: v for k, v in SD.items() if k not in ("clip_sample", "set_alpha_to_one")}
    vdm = Counting()
    ours = run("origin", vdm=vdm, scheduler=DPMSolverMultistepScheduler(**config, algorithm_type="sde-dpmsolver++"),
               standard_step_on_frames=True, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    x = torch.randn(1, 4, 3, 4, 4)
    scheduler = DPMSolverMultistepScheduler(**config, algorithm_type="sde-dpmsolver++")
    scheduler.set_timesteps(6)
    generator = torch.Generator().manual_seed(0)
    cond = torch.tensor([0.0, 1.0])
    for t in scheduler.timesteps:
        u, c = vdm(torch.cat([x, x]), t, cond).chunk(2)
        eps = u + 7.5 * (c - u)
        folded = scheduler.step(eps.permute(0, 2, 1, 3, 4).reshape(3, 4, 4, 4), t, x.permute(0, 2, 1, 3, 4).reshape(3, 4, 4, 4),
                                generator=generator).prev_sample
        x = folded.reshape(1, 3, 4, 4, 4).permute(0, 2, 1, 3, 4)
    assert torch.equal(ours, x)


def test_nan_stops_with_step_and_substep():
    class Explodes(Counting):
        def __call__(self, x, t, cond):
            out = super().__call__(x, t, cond)
            return out * float("nan") if t < 700 else out

    with pytest.raises(NonFiniteLatents, match=r"after step 1, sub-step 2 \('V', back 688->788\)"):
        run("VV-VV", steps=10, vdm=Explodes())


def test_a_model_that_raises_is_named_with_step_and_sub_step():
    from ivmixed.sampler import SamplingFailed

    class Breaks(Counting):
        def __call__(self, x, t, cond):
            if t < 700:
                raise ValueError("shapes do not match")
            return super().__call__(x, t, cond)

    with pytest.raises(SamplingFailed, match=r"^sampling failed at step 1 \(t = 888\), sub-step 2 \('V', back 688->788\): ValueError: shapes do not match") as info:
        run("VV-VV", steps=10, vdm=Breaks())
    assert isinstance(info.value.__cause__, ValueError)


def test_program_with_i_needs_an_image_model():
    with pytest.raises(ValueError, match="uses the image model"):
        run("IV-IV", vdm=Counting(), idm=None)


def test_batch_rows_are_independent():
    """Two prompts in one batch give the same result as each alone (no cross-talk in the loop)."""
    _, idm = image_fake()
    both = run("IV-IV", batch=2, idm=idm, vdm=Counting())
    torch.manual_seed(0)
    latents = torch.randn(2, 4, 3, 4, 4)
    _, idm = image_fake()
    alone = run_program(
        parse("IV-IV"), idm=idm, vdm=Counting(), scheduler=ddim(), latents=latents[1:], idm_cond=torch.tensor([0.0] * 3 + [1.0] * 3),
        vdm_cond=torch.tensor([0.0, 1.0]), num_steps=6, guidance=7.5, progress=False,
    )
    assert torch.allclose(both[1:], alone, atol=1e-6)


def test_zigzag_schedule_is_what_the_sub_steps_walk_on():
    """The zigzag moves on ``zigzag_schedule`` when one is given, and on the scheduler's table otherwise."""
    default = run("VV-VV", vdm=Counting())
    same = run("VV-VV", vdm=Counting(), zigzag_schedule=NoiseSchedule.from_scheduler(ddim()))
    other_table = NoiseSchedule.from_scheduler(DDIMScheduler(beta_schedule="linear", beta_start=1e-4, beta_end=0.02))
    other = run("VV-VV", vdm=Counting(), zigzag_schedule=other_table)
    assert torch.equal(default, same)
    assert (default - other).abs().max() > 1e-3
    # origin never reads the zigzag table
    assert torch.equal(run("origin", vdm=Counting()), run("origin", vdm=Counting(), zigzag_schedule=other_table))


# -- ω = 1: the standard step without the unconditional pass ----------------------------------------------------


def test_conditional_half_of_each_conditioning_kind():
    from ivmixed.backbones.diffusers import UNetCond
    from ivmixed.guidance import conditional_half, skips_unconditional

    text = torch.arange(4 * 3 * 2, dtype=torch.float32).reshape(4, 3, 2)  # [uncond; cond] of two clips
    assert torch.equal(conditional_half(text), text[2:])
    assert conditional_half(torch.zeros(3, 2)) is None  # odd rows: not a doubled batch
    assert conditional_half(torch.tensor(1.0)) is None
    assert conditional_half({"not": "a conditioning"}) is None
    cond = UNetCond(text, added_cond_kwargs={"time_ids": torch.arange(4.0)[:, None]}, timestep_cond=torch.ones(4, 5), extra={"fps": torch.full((4,), 8), "scale": 0.5})
    half = conditional_half(cond)
    assert torch.equal(half.encoder_hidden_states, text[2:]) and torch.equal(half.added_cond_kwargs["time_ids"], torch.tensor([[2.0], [3.0]]))
    assert half.timestep_cond.shape == (2, 5) and half.extra["fps"].shape == (2,) and half.extra["scale"] == 0.5
    assert skips_unconditional(1, text) and skips_unconditional(1.0, cond)
    assert not skips_unconditional(1.0000001, text) and not skips_unconditional(0.0, text) and not skips_unconditional(1.0, object())


def test_at_guidance_one_the_standard_step_sees_the_conditional_rows_only():
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False)
    seen = []

    def vdm(x, t, cond):
        seen.append((x.shape[0], cond.shape[0]))
        return 0.1 * x + cond.mean() * torch.ones_like(x)

    latents = torch.randn(2, 4, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    cond = torch.stack([torch.zeros(()), torch.zeros(()), torch.ones(()), 2 * torch.ones(())])[:, None]  # uncond 0, cond 1 and 2
    common = dict(idm=None, vdm=vdm, latents=latents, idm_cond=None, vdm_cond=cond, num_steps=5)
    one = run_program(parse("VV-VV"), scheduler=scheduler, guidance=1.0, **common)
    assert seen[-1] == (2, 2) and seen[0] == (4, 4)  # zigzag sub-steps guided (both halves), standard step halved
    seen.clear()
    other = run_program(parse("VV-VV"), scheduler=scheduler, guidance=1.5, **common)
    assert all(rows == (4, 4) for rows in seen)
    assert not torch.allclose(one, other)
    assert parse("VV-VV").cost(5, 3, guided_standard_step=False).vdm_clip_evals == parse("VV-VV").cost(5, 3).vdm_clip_evals - 5
