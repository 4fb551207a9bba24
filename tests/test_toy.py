"""The toy backbone: exact scores against a brute-force mixture, the exact-score laws of the sampler, metrics, goldens."""

import math
import subprocess
import sys

import pytest
import torch

import ivmixed
from ivmixed import parse
from ivmixed.backbones.toyworld import (
    APPEARANCES,
    DIRECTIONS,
    ToyBackbone,
    ToyWorld,
    _bump_matrix,
    all_prompts,
    clip_metrics,
    parse_prompt,
)
from ivmixed.sampler import run_program
from ivmixed.schedules import GuidanceTable, Ramp
from ivmixed.testing import BackboneContract


@pytest.fixture(scope="module")
def toy():
    return ToyBackbone()


# -- prompts --------------------------------------------------------------------------------------


def test_prompt_parses_appearance_and_direction():
    s = parse_prompt("A bright blob, moving LEFT.")
    assert s.appearances == ("bright",) and s.directions == ("left",)
    assert parse_prompt("").appearances == tuple(APPEARANCES) and parse_prompt("").directions == tuple(DIRECTIONS)
    assert parse_prompt("a dark blob").directions == tuple(DIRECTIONS)
    assert parse_prompt("a blob moving up").appearances == tuple(APPEARANCES)
    assert parse_prompt("a dark blob moving down").mask().sum() == 1


def test_unknown_word_lists_the_vocabulary():
    with pytest.raises(ValueError) as err:
        parse_prompt("a purple blob moving sideways")
    text = str(err.value)
    assert text.startswith("the toy world does not know the word(s) 'purple', 'sideways' in prompt 'a purple blob moving sideways'.")
    assert "appearances: bright, dark; directions: left, right, up, down; other words: " in text


def test_two_appearances_is_an_error():
    with pytest.raises(ValueError, match="names two appearances"):
        parse_prompt("a bright dark blob")


# -- registry and loading -------------------------------------------------------------------------


def test_spec_module_does_not_import_torch():
    code = "import sys, ivmixed.backbones.toy as t; print(t.SPEC.name, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["toy", "False"]


def test_loads_through_the_entry_point_with_options():
    bb = ivmixed.load("toy", world="large-mismatch", spread=0.07, dtype="float32")
    assert isinstance(bb, ToyBackbone)
    assert bb.world.vdm_blob == (2.0, 0.45) and bb.world.spread == 0.07 and bb.dtype == torch.float32
    with pytest.raises(ValueError, match="does not take option"):
        ivmixed.load("toy", blob_size=3)
    with pytest.raises(ValueError, match="unknown toy world 'huge'; named worlds: default, large-mismatch"):
        ivmixed.load("toy", world="huge")


def test_backbone_basics(toy):
    assert toy.vae_scale_factor == 1 and toy.example_prompt == "a bright blob moving right"
    parse_prompt(toy.example_prompt)
    sched = toy.make_scheduler()
    sched.set_timesteps(50)
    assert int(sched.timesteps[0]) == 999 and int(sched.timesteps[-1]) == 19 and float(sched.final_alpha_cumprod) == 1.0
    g = torch.Generator("cpu").manual_seed(3)
    lat = toy.initial_latents(2, 8, 16, 16, g)
    assert lat.dtype == torch.float64
    assert torch.equal(lat.float(), torch.randn((2, 1, 8, 16, 16), generator=torch.Generator("cpu").manual_seed(3)))
    frames = toy.decode(torch.linspace(-2, 2, 2 * 8 * 16 * 16).reshape(2, 1, 8, 16, 16))
    assert frames.shape == (2, 8, 16, 16, 3) and frames.dtype == torch.float32
    assert float(frames.min()) == 0.0 and float(frames.max()) == 1.0
    d = toy.describe()
    assert d["backbone"] == "toy" and d["world"] == "default" and d["world_parameters"]["vdm_blob_width"] == 1.5


def test_world_parameters_are_checked():
    assert ToyWorld().vdm_blob == (1.5, 0.6)
    assert ToyWorld(mismatch=0.0).vdm_blob == ToyWorld().idm_blob
    assert ToyWorld(vdm_blob_width=3.0, vdm_contrast=0.2).vdm_blob == (3.0, 0.2)
    for bad, message in (({"spread": 0}, "spread must be > 0"), ({"frames": 0}, "frames must be an integer >= 1"),
                         ({"mismatch": -1}, "mismatch must be >= 0"), ({"beta_end": 2}, "0 < beta_start < beta_end < 1")):
        with pytest.raises(ValueError, match=message):
            ToyWorld(**bad)
    with pytest.raises(ValueError, match="toy world has no parameter"):
        ToyWorld.named("default", colour=1)


def test_conditioning_is_the_doubled_batch_of_allowed_components(toy):
    cond = toy.encode(["a bright blob moving left", "a blob moving up"], ["a dark blob", ""])
    assert cond.vdm.shape == (4, 2, 4) and cond.idm.shape == (4, 2)
    assert cond.vdm[0].tolist() == [[False] * 4, [True] * 4]  # negative prompt "a dark blob": the dark mixture
    assert bool(cond.vdm[1].all())  # "" is the mixture over every prompt
    assert cond.vdm[2].tolist() == [[True, False, False, False], [False] * 4]
    assert cond.vdm[3].tolist() == [[False, False, True, False]] * 2
    assert cond.idm.tolist() == [[False, True], [True, True], [True, False], [True, True]]


class TestToyContract(BackboneContract):
    """The conformance suite every backbone passes, run on the toy world through the registry."""

    name = "toy"
    size = dict(frames=3, height=8, width=8, steps=4)
    prompts = ("a bright blob moving left", "a dark blob moving up")


# -- exact scores against a brute-force mixture --------------------------------------------------


def _brute_eps(means, x, abar, spread, allowed):
    """ε = −s ∇ log p_t(x) of Σ_k N(α μ_k, (α²τ² + s²) I) over the allowed components, by autograd."""
    alpha, s = math.sqrt(abar), math.sqrt(1 - abar)
    v = abar * spread**2 + (1 - abar)
    x = x.clone().requires_grad_(True)
    d2 = ((x[:, None, :] - alpha * means[None]) ** 2).sum(-1)  # (R, K)
    logp = torch.logsumexp((-d2 / (2 * v)).masked_fill(~allowed, float("-inf")), dim=1)
    (grad,) = torch.autograd.grad(logp.sum(), x)
    return -s * grad


def _all_clips(world, frames, h, w, degraded):
    """Every component mean, in (appearance, direction, start) order, rendered by brute force."""
    blob_width, contrast = world.vdm_blob if degraded else world.idm_blob
    bumps = _bump_matrix(h, w, blob_width, torch.float64, "cpu")
    out = []
    for sign in APPEARANCES.values():
        for dr, dc in DIRECTIONS.values():
            for p0 in range(h * w):
                r0, c0 = divmod(p0, w)
                idx = [((r0 + dr * f) % h) * w + (c0 + dc * f) % w for f in range(frames)]
                out.append(world.background + sign * contrast * bumps[idx].reshape(-1))
    return torch.stack(out)


@pytest.mark.parametrize("t", [0, 250, 700, 999])
def test_vdm_is_the_exact_mixture_score(t):
    bb = ToyBackbone(background=0.1, spread=0.2, mismatch=0.7)
    f, h, w = 3, 5, 6
    means = _all_clips(bb.world, f, h, w, degraded=True)  # (A·D·P, F·H·W)
    prompts = ["a bright blob moving left", "a dark blob", "", "a blob moving up"]
    masks = torch.stack([parse_prompt(p).mask() for p in prompts])  # (R, A, D)
    allowed = masks[:, :, :, None].expand(-1, -1, -1, h * w).reshape(len(prompts), -1)
    gen = torch.Generator().manual_seed(t)
    x = means[torch.tensor([0, 200, 77, 131])] * 0.8 + 0.5 * torch.randn(4, f * h * w, generator=gen, dtype=torch.float64)
    abar = float(bb.make_scheduler().alphas_cumprod[t])
    want = _brute_eps(means, x, abar, bb.world.spread, allowed)
    got = bb.vdm(x.reshape(4, 1, f, h, w), t, masks).reshape(4, -1)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("t", [0, 400, 999])
def test_idm_is_the_exact_per_frame_marginal_score(t):
    bb = ToyBackbone(background=-0.2, spread=0.15, blob_width=1.3)
    f, h, w = 2, 6, 5
    bumps = _bump_matrix(h, w, bb.world.blob_width, torch.float64, "cpu")
    frames = torch.cat([bb.world.background + sign * bb.world.contrast * bumps for sign in APPEARANCES.values()])  # (A·P, H·W)
    prompts = ["a bright blob moving left", ""]
    app = torch.stack([parse_prompt(p).mask().any(1) for p in prompts])  # (2, A)
    gen = torch.Generator().manual_seed(t)
    x = 0.7 * torch.randn(2, 1, f, h, w, generator=gen, dtype=torch.float64)
    got = bb.idm(x, t, app)  # video latents in, folded per frame inside
    abar = float(bb.make_scheduler().alphas_cumprod[t])
    for clip in range(2):
        allowed = app[clip][:, None].expand(-1, h * w).reshape(1, -1).expand(f, -1)
        want = _brute_eps(frames, x[clip, 0].reshape(f, -1), abar, bb.world.spread, allowed)
        torch.testing.assert_close(got[clip, 0].reshape(f, -1), want, rtol=1e-9, atol=1e-9)


def test_float32_agrees_with_float64():
    x = torch.randn(2, 1, 8, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    b64, b32 = ToyBackbone(), ToyBackbone(dtype="float32")
    cond = b64.encode(["a bright blob moving left", "a dark blob moving up"], ["", ""])
    for t in (999, 500, 60, 0):
        e64 = b64.vdm(torch.cat([x, x]), t, cond.vdm)
        e32 = b32.vdm(torch.cat([x, x]).float(), t, cond.vdm)
        assert e32.dtype == torch.float32
        torch.testing.assert_close(e32.double(), e64, rtol=1e-4, atol=1e-4)


# -- exact-score laws of the sampler on the toy world --------------------------------------------


def _run_same_model(toy, program, steps, zigzag=0.0):
    """Sample two small clips with IDM ≡ VDM (the video score in both roles), standard guidance ω = 2."""
    cond = toy.encode(["a bright blob moving right", "a dark blob moving up"], ["", ""])
    latents = toy.initial_latents(2, 4, 8, 8, torch.Generator("cpu").manual_seed(0))
    return run_program(
        parse(program),
        idm=toy.vdm,
        vdm=toy.vdm,
        scheduler=toy.make_scheduler(),
        latents=latents,
        idm_cond=cond.vdm,
        vdm_cond=cond.vdm,
        num_steps=steps,
        guidance=2.0,
        zigzag=GuidanceTable.uniform(zigzag),
        progress=False,
    )


# With IDM ≡ VDM the letters no longer matter, only the zigzag's length and phase order: these four cover
# every deterministic form (IV-IV runs exactly like II-II). R forms redraw noise, so they stay close to
# origin in distribution but not path by path, and are left out.
DETERMINISTIC_SHAPES = ["I-I", "II-II", "I-I:nf", "II-II:nf"]


@pytest.mark.parametrize("program", DETERMINISTIC_SHAPES)
def test_zero_guidance_zigzag_with_one_model_stays_close_to_origin(program):
    # a smooth world (spread 0.3): with a sharp mixture, an O(Δ²) nudge can flip which trajectory a
    # clip commits to at coarse N, and the gap then shrinks only once N resolves that
    toy = ToyBackbone(spread=0.3)
    gaps = []
    for steps in (50, 100, 200):
        origin = _run_same_model(toy, "origin", steps)
        other = _run_same_model(toy, program, steps)
        gaps.append(float((other - origin).norm() / origin.norm()))
    # each sub-step pair is identity up to O(Δ²), so the gap falls like 1/N: about halves per doubling
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.45 * gaps[0], gaps
    assert gaps[-1] < 0.08, gaps


def test_guidance_inside_the_zigzag_moves_away_from_origin():
    toy = ToyBackbone(spread=0.3)
    origin = _run_same_model(toy, "origin", 100)
    plain = _run_same_model(toy, "II-II", 100, zigzag=0.0)
    guided_ = _run_same_model(toy, "II-II", 100, zigzag=4.0)
    assert float((guided_ - origin).norm()) > 2 * float((plain - origin).norm())


def test_flipping_the_sign_of_inversion_guidance_changes_the_result():
    toy = ToyBackbone()
    four = Ramp("constant", (4.0,))
    minus = Ramp("constant", (-4.0,))
    prompt, kw = ["a bright blob moving right", "a dark blob moving up"], dict(program="IV-IV", seed=0, steps=10, progress=False)
    released = toy.generate(prompt, zigzag=GuidanceTable(i_go=four, i_back=four, v_go=four, v_back=four), **kw).latents
    flipped = toy.generate(prompt, zigzag=GuidanceTable(i_go=four, i_back=minus, v_go=four, v_back=minus), **kw).latents
    again = toy.generate(prompt, zigzag=GuidanceTable(i_go=four, i_back=four, v_go=four, v_back=four), **kw).latents
    assert torch.equal(released, again)
    assert float((released - flipped).abs().max()) > 1e-2


class _Counter:
    """Counts what a score model is asked to evaluate: images (per frame) for the IDM, clips for the VDM."""

    def __init__(self, model, per_frame):
        self.model, self.per_frame, self.count = model, per_frame, 0

    def __call__(self, x, t, cond):
        self.count += x.shape[0] * (x.shape[2] if self.per_frame else 1)
        return self.model(x, t, cond)


@pytest.mark.parametrize("program", ["origin", "IV-IV", "RR-II:nf", "VV-VV@66.7%", "IV-IV+VV-VV@i%3=2", "II-VV@0..4"])
def test_cost_in_the_manifest_equals_the_calls_counted(program):
    toy = ToyBackbone()
    toy.idm = _Counter(toy.idm, per_frame=True)  # the IDM adapter receives video latents (N, C, F, H, W)
    toy.vdm = _Counter(toy.vdm, per_frame=False)
    videos = 2
    video = toy.generate(["a bright blob moving left", "a dark blob"], program=program, seed=1, steps=12, frames=3, progress=False)
    counted = {"idm_image_evals": toy.idm.count // videos, "vdm_clip_evals": toy.vdm.count // videos}
    assert toy.idm.count % videos == 0 and toy.vdm.count % videos == 0
    assert video.manifest()["cost"] == counted
    assert counted == parse(program).cost(num_steps=12, num_frames=3).as_dict()


# -- metrics ----------------------------------------------------------------------------------------


def test_metrics_of_true_clips_are_perfect(toy):
    prompts = all_prompts()
    clips = toy.render(prompts, torch.arange(8) * 29)
    m = clip_metrics(toy.world, clips, prompts)
    for name in ("frame_error", "video_error"):
        assert float(m[name].abs().max()) < 1e-7
    assert m["coherence"].tolist() == [1.0] * 8 and m["prompt_accuracy"].tolist() == [1.0] * 8


def test_metrics_see_blur_wrong_motion_and_wrong_prompt(toy):
    prompt = ["a bright blob moving right"]
    sharp = toy.render(prompt, torch.tensor([17]))
    blurry = toy.render(prompt, torch.tensor([17]), degraded=True)
    m = clip_metrics(toy.world, blurry, prompt)
    gap = float(((sharp - blurry) ** 2).mean().sqrt())
    assert m["frame_error"].item() == pytest.approx(gap, rel=1e-9) and m["coherence"].item() == 1.0
    wrong_way = toy.render(["a bright blob moving left"], torch.tensor([17]))
    m = clip_metrics(toy.world, wrong_way, prompt)
    assert m["frame_error"].item() < 1e-7 and m["coherence"].item() == 0.0 and m["prompt_accuracy"].item() == 0.0
    assert m["video_error"].item() > 0.1
    shuffled = sharp[:, :, torch.tensor([0, 1, 2, 3, 7, 6, 5, 4])]
    m = clip_metrics(toy.world, shuffled, prompt)
    assert m["coherence"].item() == pytest.approx(3 / 7)  # 0-1, 1-2, 2-3 move right; 3-7 jumps, 7-6-5-4 go left and m["frame_error"].item() < 1e-7
    m = clip_metrics(toy.world, sharp, ["a dark blob moving right"])
    assert m["prompt_accuracy"].item() == 0.0 and m["frame_error"].item() > 0.1


# -- goldens ----------------------------------------------------------------------------------------

# Pinned with float64 on the CPU (torch 2.13, diffusers 0.42): seed 0, 50 steps, the world's defaults.
# (world, program, prompts) -> (metrics, sum of the final latents, sum of their absolute values)
GOLDENS = [
    (
        "default",
        "IV-IV",
        "example",
        {"frame_error": 0.039017, "coherence": 1.0, "video_error": 0.039209, "prompt_accuracy": 1.0},
        (65.35392276245237, 70.7824520918869),
    ),
    (
        "default",
        "origin",
        "example",
        {"frame_error": 0.048958, "coherence": 1.0, "video_error": 0.048981, "prompt_accuracy": 1.0},
        (70.9980795982567, 103.52585124290185),
    ),
    (
        "large-mismatch",
        "IV-IV",
        "all",
        {"frame_error": 0.055707, "coherence": 0.339286, "video_error": 0.056493, "prompt_accuracy": 1.0},
        (-0.3203544382640864, 697.30304670437),
    ),
]


@pytest.mark.parametrize("world, program, prompts, metrics, sums", GOLDENS, ids=[f"{g[0]}-{g[1]}" for g in GOLDENS])
def test_golden_numbers(world, program, prompts, metrics, sums):
    bb = ToyBackbone(world=world)
    video = bb.generate(bb.example_prompt if prompts == "example" else bb.prompts, program=program, seed=0, progress=False)
    for name, value in metrics.items():
        assert video.metrics[name] == pytest.approx(value, abs=1e-4), (name, video.metrics)
    assert float(video.latents.sum()) == pytest.approx(sums[0], rel=1e-6, abs=1e-6)
    assert float(video.latents.abs().sum()) == pytest.approx(sums[1], rel=1e-6)


# -- imperfect models ---------------------------------------------------------------------------------


def _brute_eps_weighted(means, x, abar, spread, log_weights):
    """ε of Σ_k w_k N(α μ_k, (α²τ² + s²) I) with log-weights per row, by autograd."""
    alpha, s = math.sqrt(abar), math.sqrt(1 - abar)
    v = abar * spread**2 + (1 - abar)
    x = x.clone().requires_grad_(True)
    d2 = ((x[:, None, :] - alpha * means[None]) ** 2).sum(-1)
    logp = torch.logsumexp(-d2 / (2 * v) + log_weights, dim=1)
    (grad,) = torch.autograd.grad(logp.sum(), x)
    return -s * grad


def test_named_worlds_give_mismatch_as_two_numbers():
    learned = ToyWorld.named("learned")
    assert learned.vdm_blob == (1.5, 0.6) and learned.vdm_spread == 0.1 and learned.idm_bias == 1.0 and learned.leak == 0.25
    assert not learned.is_exact and ToyWorld.named("default").is_exact and ToyWorld.named("large-mismatch").is_exact
    # overriding the one knob replaces the world's two numbers; overriding one of the two keeps the other
    assert ToyWorld.named("learned", mismatch=1.0).vdm_blob == (2.0, 0.45)
    assert ToyWorld.named("learned", vdm_contrast=0.3).vdm_blob == (1.5, 0.3)
    compressed = ToyWorld.named("compressed")
    assert compressed.temporal_compression == 4 and compressed.frames == 17 and compressed.latent_frames(17) == 5
    for bad, message in (({"leak": 1.5}, "leak must be between 0 and 1"), ({"idm_bias": -1}, "idm_bias must be >= 0"),
                         ({"vdm_spread": 0}, "vdm_spread must be > 0"), ({"temporal_compression": 0}, "temporal_compression must be")):
        with pytest.raises(ValueError, match=message):
            ToyWorld(**bad)
    with pytest.raises(ValueError, match=r"8 frames is not of that form: use 5 or 9 \(e.g. --frames 9\)"):
        ToyWorld(temporal_compression=4)


@pytest.mark.parametrize("t", [0, 300, 999])
def test_imperfect_vdm_is_the_exact_score_of_its_smoothed_leaky_world(t):
    bb = ToyBackbone(spread=0.05, vdm_spread=0.2, leak=0.3, mismatch=0.7)
    f, h, w = 3, 5, 6
    means = _all_clips(bb.world, f, h, w, degraded=True)
    prompts = ["a bright blob moving left", "a dark blob", ""]
    masks = torch.stack([parse_prompt(p).mask() for p in prompts])
    allowed = masks[:, :, :, None].expand(-1, -1, -1, h * w).reshape(len(prompts), -1)
    log_w = torch.where(allowed, 0.0, math.log(0.3)).to(torch.float64)
    gen = torch.Generator().manual_seed(t)
    x = means[torch.tensor([0, 200, 77])] * 0.8 + 0.3 * torch.randn(3, f * h * w, generator=gen, dtype=torch.float64)
    abar = float(bb.make_scheduler().alphas_cumprod[t])
    got = bb.vdm(x.reshape(3, 1, f, h, w), t, masks).reshape(3, -1)
    torch.testing.assert_close(got, _brute_eps_weighted(means, x, abar, 0.2, log_w), rtol=1e-9, atol=1e-9)
    # the smoothing is an error that grows as the noise falls: none at t = 999, large at t = 0
    exact = _brute_eps_weighted(means, x, abar, 0.05, log_w)
    error = float((got - exact).norm() / exact.norm())
    if t == 999:
        assert error < 1e-3, error
    if t == 0:
        assert error > 0.05, error


@pytest.mark.parametrize("t", [0, 500, 999])
def test_biased_idm_is_the_exact_score_with_a_position_prior(t):
    from ivmixed.backbones.toyworld import position_preference

    bb = ToyBackbone(idm_bias=1.5, leak=0.2)
    f, h, w = 2, 6, 5
    bumps = _bump_matrix(h, w, bb.world.blob_width, torch.float64, "cpu")
    frames = torch.cat([sign * bb.world.contrast * bumps for sign in APPEARANCES.values()])  # (A·P, H·W)
    app = torch.stack([parse_prompt(p).mask().any(1) for p in ["a bright blob", ""]])
    x = 0.7 * torch.randn(2, 1, f, h, w, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
    got = bb.idm(x, t, app)
    abar = float(bb.make_scheduler().alphas_cumprod[t])
    prior = 1.5 * position_preference(h, w).repeat(len(APPEARANCES))  # (A·P,)
    for clip in range(2):
        log_w = prior + torch.where(app[clip][:, None].expand(-1, h * w).reshape(-1), 0.0, math.log(0.2)).to(torch.float64)
        want = _brute_eps_weighted(frames, x[clip, 0].reshape(f, -1), abar, bb.world.spread, log_w.expand(f, -1))
        torch.testing.assert_close(got[clip, 0].reshape(f, -1), want, rtol=1e-9, atol=1e-9)


def test_leak_makes_guidance_matter():
    # with exact scores the conditional term settles the prompt at any ω; with leak 1 the prompt is ignored
    kw = dict(program="origin", seed=0, steps=10, frames=4, progress=False)
    prompts = all_prompts()
    exact = ToyBackbone().generate(prompts, guidance=1.0, **kw).metrics["prompt_accuracy"]
    deaf = ToyBackbone(leak=1.0).generate(prompts, guidance=7.5, **kw).metrics["prompt_accuracy"]
    leaky_1 = ToyBackbone(leak=0.5).generate(prompts, guidance=1.0, **kw).latents
    leaky_8 = ToyBackbone(leak=0.5).generate(prompts, guidance=8.0, **kw).latents
    assert exact == 1.0 and deaf < 0.5
    assert float((leaky_1 - leaky_8).abs().max()) > 0.1


# -- temporal compression -------------------------------------------------------------------------------


def _compressed_clips(world, frames, h, w, degraded):
    """Every component mean of a compressed world by brute force: render the frames, average the groups."""
    clips = _all_clips(world, frames, h, w, degraded).reshape(-1, frames, h * w)
    k = world.temporal_compression
    groups = [[0]] + [list(range(1 + j * k, 1 + (j + 1) * k)) for j in range((frames - 1) // k)]
    return torch.stack([clips[:, g].mean(1) for g in groups], 1).reshape(clips.shape[0], -1)


@pytest.mark.parametrize("t", [0, 400, 999])
def test_compressed_vdm_is_the_exact_score_of_the_compressed_world(t):
    bb = ToyBackbone(temporal_compression=2, frames=5, background=0.1, spread=0.2, leak=0.1)
    f, h, w = 5, 5, 6
    means = _compressed_clips(bb.world, f, h, w, degraded=True)  # (K, 3·H·W)
    masks = torch.stack([parse_prompt(p).mask() for p in ["a bright blob moving left", ""]])
    allowed = masks[:, :, :, None].expand(-1, -1, -1, h * w).reshape(2, -1)
    log_w = torch.where(allowed, 0.0, math.log(0.1)).to(torch.float64)
    x = means[torch.tensor([3, 100])] + 0.3 * torch.randn(2, means.shape[1], generator=torch.Generator().manual_seed(t), dtype=torch.float64)
    abar = float(bb.make_scheduler().alphas_cumprod[t])
    got = bb.vdm(x.reshape(2, 1, 3, h, w), t, masks).reshape(2, -1)
    torch.testing.assert_close(got, _brute_eps_weighted(means, x, abar, 0.2, log_w), rtol=1e-9, atol=1e-9)


def test_compressed_world_latents_metrics_and_cost():
    bb = ToyBackbone(world="compressed")
    prompts = all_prompts()
    truth = bb.render(prompts, torch.arange(8) * 29)
    assert truth.shape == (8, 1, 5, 16, 16)
    m = bb.clip_metrics(truth, prompts)
    assert float(m["frame_error"].max()) < 1e-7 and float(m["video_error"].max()) < 1e-7
    assert m["coherence"].tolist() == [1.0] * 8 and m["prompt_accuracy"].tolist() == [1.0] * 8
    backwards = bb.render(["a bright blob moving left"], torch.tensor([17]))
    m = bb.clip_metrics(backwards, ["a bright blob moving right"])
    assert m["frame_error"].item() < 1e-7 and m["coherence"].item() == 0.0 and m["prompt_accuracy"].item() == 0.0
    # the IDM sees 5 latent frames per clip, and that is what the manifest counts
    bb.idm = _Counter(bb.idm, per_frame=True)
    video = bb.generate(prompts[:2], program="IV-IV", seed=0, steps=4, progress=False)
    assert video.latents.shape == (2, 1, 5, 16, 16) and video.settings["frames"] == 17
    assert video.cost["idm_image_evals"] == bb.idm.count // 2 == parse("IV-IV").cost(num_steps=4, num_frames=5).idm_image_evals
    with pytest.raises(ValueError, match="1 \\+ 4·n frames"):
        bb.generate(prompts[0], frames=8, steps=2, progress=False)


# -- distribution metrics ---------------------------------------------------------------------------------


def test_distribution_metric_puts_true_samples_at_the_floor():
    bb = ToyBackbone(frames=4)
    prompts = all_prompts()[:2] * 12  # 12 clips per prompt
    truth = bb.true_samples(prompts, seed=5)
    d = bb.distribution_metrics(truth, prompts)
    assert len(d["energy_distance"]) == 2 and len(d["spread_ratio"]) == 2
    # true samples against the (independent) reference set: at the floor, and the right spread
    assert all(abs(e) < 0.004 for e in d["energy_distance"]), d
    assert all(0.85 < r < 1.15 for r in d["spread_ratio"]), d
    # the same trajectories without their noise: sharper frames, but no spread, and far from the true distribution
    from ivmixed.backbones.toyworld import nearest_trajectories

    starts = nearest_trajectories(bb.world, truth, prompts)[:, 2]
    clean = bb.render(prompts, starts)
    assert float(bb.clip_metrics(clean, prompts)["frame_error"].mean()) < float(bb.clip_metrics(truth, prompts)["frame_error"].mean())
    c = bb.distribution_metrics(clean, prompts)
    assert all(r < 0.01 for r in c["spread_ratio"]) and min(c["energy_distance"]) > 10 * max(abs(e) for e in d["energy_distance"])
    # twice the noise: spread ratio about 2
    noisy = clean + 2 * (truth - clean)
    assert all(1.7 < r < 2.3 for r in bb.distribution_metrics(noisy, prompts)["spread_ratio"])
    # a prompt with one clip has no within-prompt distances: NaN, not a number
    assert math.isnan(bb.distribution_metrics(truth[:1], prompts[:1])["energy_distance"][0])


def test_distribution_metrics_of_a_compressed_world():
    bb = ToyBackbone(temporal_compression=2, frames=5)
    prompts = all_prompts()[:1] * 6
    truth = bb.true_samples(prompts, seed=2)
    assert truth.shape == (6, 1, 3, 16, 16)
    d = bb.distribution_metrics(truth, prompts)
    assert abs(d["energy_distance"][0]) < 0.01 and 0.7 < d["spread_ratio"][0] < 1.3, d
