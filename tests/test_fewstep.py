"""The few-step backbones ``animatediff-lightning`` and ``animatelcm`` on tiny random weights, through the real loading path."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch

import ivmixed
from ivmixed.backbones.diffusers import MissingWeights
from ivmixed.cli import main

pytestmark = pytest.mark.usefixtures("torch_single_thread")

PAPER_FORMS = ["origin", "R-I", "RR-II", "R-V", "RR-VV", "I-I", "II-II", "V-V", "VV-VV", "IV-IV", "VI-VI", "II-VV"]
SIZE = dict(frames=3, height=32, width=40)
PROMPTS, NEGATIVE = ["two horses race at sunset", "a red car"], "blurry, low quality"


@pytest.fixture(scope="module")
def few_step_models(tiny_models, tmp_path_factory):
    """A Lightning repo folder (4- and 8-step files), its adapter config, an AnimateLCM repo folder."""
    from ivmixed.testing import tiny

    root = tmp_path_factory.mktemp("few_step")
    return {
        "lightning": tiny.save_lightning(root / "lightning", steps=(4, 8)),
        "lightning_config": tiny.save_motion_adapter_config(root / "lightning_config"),
        "animatelcm": tiny.save_animatelcm(root / "animatelcm", tiny_models.sd15),
    }


@pytest.fixture(scope="module")
def lightning_options(tiny_models, few_step_models):
    return {
        "model": str(tiny_models.sd15),
        "motion_module": str(few_step_models["lightning"]),
        "motion_module_config": str(few_step_models["lightning_config"]),
        "image_model": str(tiny_models.image_unet),
        "device": "cpu",
    }


@pytest.fixture(scope="module")
def lcm_options(tiny_models, few_step_models):
    return {
        "model": str(tiny_models.sd15),
        "motion_adapter": str(few_step_models["animatelcm"]),
        "lcm_lora": str(few_step_models["animatelcm"]),
        "image_model": str(tiny_models.image_unet),
        "device": "cpu",
    }


@pytest.fixture(scope="module")
def lightning(lightning_options):
    return ivmixed.load("animatediff-lightning", **lightning_options)


@pytest.fixture(scope="module")
def animatelcm(lcm_options):
    return ivmixed.load("animatelcm", **lcm_options)


# -- the stock recipes of the model cards ---------------------------------------------------------------------


def stock_lightning(base: str, checkpoint: str, config_folder: str):
    """The Lightning model card: MotionAdapter + load_state_dict of the file, Euler trailing with linear betas."""
    from diffusers import AnimateDiffPipeline, EulerDiscreteScheduler, MotionAdapter
    from safetensors.torch import load_file

    adapter = MotionAdapter.from_config(MotionAdapter.load_config(config_folder))
    adapter.load_state_dict(load_file(checkpoint))
    pipe = AnimateDiffPipeline.from_pretrained(base, motion_adapter=adapter)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing", beta_schedule="linear")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def stock_animatelcm(base: str, repo: str, scale: float = 0.8):
    """The AnimateLCM model card: MotionAdapter.from_pretrained, LCMScheduler with linear betas, the LoRA at 0.8."""
    from diffusers import AnimateDiffPipeline, LCMScheduler, MotionAdapter

    adapter = MotionAdapter.from_pretrained(repo)
    pipe = AnimateDiffPipeline.from_pretrained(base, motion_adapter=adapter)
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config, beta_schedule="linear")
    pipe.load_lora_weights(repo, weight_name="AnimateLCM_sd15_t2v_lora.safetensors", adapter_name="lcm-lora")
    pipe.set_adapters(["lcm-lora"], [scale])
    pipe.set_progress_bar_config(disable=True)
    return pipe


def stock_frames(pipe, *, steps: int, guidance: float, seed: int, negative: bool = True) -> np.ndarray:
    extra = {"negative_prompt": [NEGATIVE] * len(PROMPTS)} if negative else {}
    out = pipe(
        PROMPTS,
        num_frames=SIZE["frames"],
        height=SIZE["height"],
        width=SIZE["width"],
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
        **extra,
    )
    return np.asarray(out.frames)


def test_list_shows_both(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "animatediff-lightning from ivmixed" in out
    assert "animatelcm     from ivmixed" in out


@pytest.mark.parametrize("steps", [4, 8])
def test_lightning_origin_equals_stock_pipeline(tiny_models, few_step_models, lightning_options, steps):
    ours = ivmixed.load("animatediff-lightning", **lightning_options, distilled_steps=steps)
    assert ours.defaults.steps == steps and ours.defaults.guidance == 1.0
    video = ours.generate(PROMPTS, program="origin", seed=7, progress=False, **SIZE)  # the defaults: N = file's steps, ω 1
    checkpoint = few_step_models["lightning"] / f"animatediff_lightning_{steps}step_diffusers.safetensors"
    stock = stock_lightning(str(tiny_models.sd15), str(checkpoint), str(few_step_models["lightning_config"]))
    expected = stock_frames(stock, steps=steps, guidance=1.0, seed=7, negative=False)
    difference = float(np.abs(expected - video.frames).max())
    print(f"animatediff-lightning {steps}-step origin vs stock AnimateDiffPipeline: max |Δ| = {difference:.3g}")
    assert video.frames.shape == expected.shape == (2, 3, 32, 40, 3)
    assert difference <= 1e-4


def test_animatelcm_origin_equals_stock_pipeline(tiny_models, few_step_models, animatelcm):
    assert (animatelcm.defaults.steps, animatelcm.defaults.guidance) == (6, 2.0)
    video = animatelcm.generate(PROMPTS, program="origin", seed=5, negative_prompt=NEGATIVE, progress=False, **SIZE)
    stock = stock_animatelcm(str(tiny_models.sd15), str(few_step_models["animatelcm"]))
    expected = stock_frames(stock, steps=6, guidance=2.0, seed=5)
    difference = float(np.abs(expected - video.frames).max())
    print(f"animatelcm origin vs stock AnimateDiffPipeline: max |Δ| = {difference:.3g}")
    assert video.frames.shape == expected.shape == (2, 3, 32, 40, 3)
    assert difference <= 1e-4


def test_the_lcm_lora_takes_part(lcm_options, animatelcm):
    """Without the LoRA the same seed gives other frames: the LoRA of the parity test is really applied (by both)."""
    plain = ivmixed.load("animatelcm", **{**lcm_options, "lcm_lora": None})
    kwargs = dict(program="origin", seed=5, steps=4, progress=False, decode=False, **SIZE)
    assert plain.describe()["lcm_lora_scale"] is None and animatelcm.describe()["lcm_lora_scale"] == 0.8
    assert (plain.generate("a horse", **kwargs).latents - animatelcm.generate("a horse", **kwargs).latents).abs().max() > 1e-3


def test_a_local_lightning_file_works_and_names_its_step_count(lightning_options, few_step_models):
    file = few_step_models["lightning"] / "animatediff_lightning_8step_diffusers.safetensors"
    from_file = ivmixed.load("animatediff-lightning", **{**lightning_options, "motion_module": str(file)})
    from_folder = ivmixed.load("animatediff-lightning", **lightning_options, distilled_steps=8)
    assert from_file.defaults.steps == from_file.distilled_steps == 8
    assert from_file.describe()["models"]["motion_module"] == str(file)
    kwargs = dict(program="VV-VV", seed=1, steps=2, frames=2, height=32, width=32, progress=False, decode=False)
    assert torch.equal(from_file.generate("a horse", **kwargs).latents, from_folder.generate("a horse", **kwargs).latents)


# -- every form of the paper with N = 4 ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["animatediff-lightning", "animatelcm"])
def test_every_paper_form_runs_with_four_steps(name, lightning, animatelcm):
    backbone = {"animatediff-lightning": lightning, "animatelcm": animatelcm}[name]
    frames = {}
    for form in PAPER_FORMS:
        video = backbone.generate("two horses race at sunset", program=form, seed=3, steps=4, frames=2, height=32, width=32, progress=False)
        assert video.frames.shape == (1, 2, 32, 32, 3), form
        assert np.isfinite(video.frames).all(), form
        frames[form] = video.frames
    assert np.abs(frames["IV-IV"] - frames["origin"]).max() > 1e-3


@contextlib.contextmanager
def unet_calls(backbone):
    """The (role, timestep) of every UNet call made inside the block, in order."""
    calls: list[tuple[str, int]] = []
    hooks = [
        unet.register_forward_pre_hook(lambda module, args, kwargs, role=role: calls.append((role, int(args[1]))), with_kwargs=True)
        for role, unet in (("idm", backbone.image_unet), ("vdm", backbone.unet))
    ]
    try:
        yield calls
    finally:
        for hook in hooks:
            hook.remove()


def test_lightning_zigzag_with_four_steps_lands_on_the_trailing_grid_and_retimes_the_image_model(lightning):
    """N = 4: Δ = T // N = 250 and the trailing grid is 999, 749, 499, 249, so every sub-step starts on a grid level
    (the last step's clamp at 0 aside). The SD1.5 image model is called at the timestep of its own table with the ᾱ of
    the linear level: 999 (beyond its table), 749 → 853, 499 → 599, 249 → 312, 0 → 0."""
    scheduler = lightning.make_scheduler()
    scheduler.set_timesteps(4)
    assert [int(t) for t in scheduler.timesteps] == [999, 749, 499, 249]
    with unet_calls(lightning) as calls:
        lightning.generate("a horse", program="IV-IV", seed=0, steps=4, progress=False, decode=False, **SIZE)
    expected = []
    for t in (999, 749, 499, 249):
        down, further = max(0, t - 250), max(0, t - 500)
        # I go at t, V go at t − Δ, I back at t − 2Δ, V back at t − Δ, then the standard step of the VDM at t
        expected += [("idm", t), ("vdm", down), ("idm", further), ("vdm", down), ("vdm", t)]
    retime = {999: 999, 749: 853, 499: 599, 249: 312, 0: 0}
    assert calls == [(role, retime[t] if role == "idm" else t) for role, t in expected]
    schedule = lightning.zigzag_schedule()
    sd15 = lightning.idm.image_eps.model.schedule
    for level, timestep in retime.items():
        if level < 905:  # within the SD1.5 table the noise levels agree to a tenth of a percent
            assert abs(float(sd15.alpha_bar(timestep)) / float(schedule.alpha_bar(level)) - 1) < 1e-2


def test_explain_takes_the_backbones_steps_frames_and_guidance(capsys, nothing_heavy_loads):
    def plan(*argv):
        assert main(["explain", "IV-IV", *argv, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    info = plan("--backbone", "animatediff-lightning")
    # 4 steps, ω 1: per step 2 + 2 guided V sub-steps and the standard step's conditional half alone
    assert (info["num_steps"], info["num_frames"], info["guidance"], info["cost"]["vdm_clip_evals"]) == (4, 16, 1.0, 20)
    assert plan("--backbone", "animatediff-lightning", "-o", "distilled_steps=8")["num_steps"] == 8
    assert plan("--backbone", "animatediff-lightning", "--guidance", "2")["cost"]["vdm_clip_evals"] == 24
    lcm = plan("--backbone", "animatelcm")
    assert (lcm["num_steps"], lcm["guidance"], lcm["cost"]["vdm_clip_evals"]) == (6, 2.0, 36)
    plain = plan()  # without a backbone: as before
    assert (plain["num_steps"], plain["num_frames"], plain["cost"]["vdm_clip_evals"]) == (50, 16, 300) and "guidance" not in plain
    assert main(["explain", "IV-IV", "--backbone", "animatediff-lightning"]) == 0
    assert "at ω 1 the standard step evaluates the conditional half alone" in capsys.readouterr().out
    assert main(["explain", "IV-IV", "-o", "distilled_steps=8"]) == 2
    assert "give --backbone NAME with it" in capsys.readouterr().err


# -- ω = 1: the standard step without the unconditional pass ----------------------------------------------------


@contextlib.contextmanager
def unet_rows(backbone):
    """(model, rows of the latent batch) of every UNet call: 2 per clip for a guided call, 1 for the conditional half alone."""
    rows: list[tuple[str, int]] = []
    hooks = [
        unet.register_forward_pre_hook(lambda module, args, kwargs, role=role: rows.append((role, int(args[0].shape[0]))), with_kwargs=True)
        for role, unet in (("vdm", backbone.unet), ("idm", backbone.image_unet))
    ]
    try:
        yield rows
    finally:
        for hook in hooks:
            hook.remove()


def test_at_guidance_one_the_standard_step_runs_the_conditional_half_alone(lightning, monkeypatch):
    import ivmixed.sampler

    frames = SIZE["frames"]
    with unet_rows(lightning) as rows:
        video = lightning.generate(PROMPTS, program="IV-IV", seed=3, steps=4, progress=False, decode=False, **SIZE)
    clips = len(PROMPTS)
    # per step: I go, V go, I back, V back (guided: both halves), then the standard step (the conditional half)
    assert rows == [("idm", 2 * clips * frames), ("vdm", 2 * clips), ("idm", 2 * clips * frames), ("vdm", 2 * clips), ("vdm", clips)] * 4
    vdm_rows = sum(n for role, n in rows if role == "vdm")
    assert video.cost == {"idm_image_evals": 2 * 2 * frames * 4, "vdm_clip_evals": (2 * 2 + 1) * 4} and vdm_rows == clips * video.cost["vdm_clip_evals"]

    # the guided form at ω = 1 gives the same latents to float rounding, at twice the standard step's cost
    monkeypatch.setattr(ivmixed.sampler, "skips_unconditional", lambda guidance, cond: False)
    with unet_rows(lightning) as guided_rows:
        both = lightning.generate(PROMPTS, program="IV-IV", seed=3, steps=4, progress=False, decode=False, **SIZE)
    assert sum(n for role, n in guided_rows if role == "vdm") == vdm_rows + 4 * clips
    # (ε_u + 1·(ε_c − ε_u) rounds differently from ε_c; measured 2.3e-05 on latents of magnitude 45, 5e-07 relative)
    assert float((both.latents - video.latents).abs().max()) <= 4e-6 * float(video.latents.abs().max())

    with unet_rows(lightning) as guided_rows:  # ω ≠ 1 guides as always
        lightning.generate(PROMPTS, program="origin", seed=3, steps=4, guidance=1.5, progress=False, decode=False, **SIZE)
    assert guided_rows == [("vdm", 2 * clips)] * 4


# -- grid-aligned sub-steps ----------------------------------------------------------------------------------------


def test_lightning_with_four_steps_is_already_grid_aligned(lightning):
    """Trailing spacing with N dividing T: the grid is 999 − 250·i, so substeps="grid" plans the very sub-steps of Δ = 250."""
    kwargs = dict(program="IV-IV", seed=4, steps=4, frames=2, height=32, width=32, progress=False, decode=False)
    delta = lightning.generate("a horse", **kwargs)
    grid = lightning.generate("a horse", substeps="grid", **kwargs)
    assert grid.settings["substeps"] == "grid"
    assert torch.equal(delta.latents, grid.latents)


def test_animatelcm_grid_aligned_sub_steps_visit_the_lcm_timesteps(animatelcm):
    """LCM's 4-step grid is 999, 759, 499, 259: Δ = 250 sub-steps miss it, grid-aligned ones land on it."""
    scheduler = animatelcm.make_scheduler()
    scheduler.set_timesteps(4)
    grid = [int(t) for t in scheduler.timesteps]
    assert grid == [999, 759, 499, 259]
    levels = {}
    for substeps in ("delta", "grid"):
        with unet_calls(animatelcm) as calls:
            video = animatelcm.generate("a horse", program="VV-VV", substeps=substeps, seed=0, steps=4, progress=False, decode=False, frames=2, height=32, width=32)
        assert torch.isfinite(video.latents).all()
        levels[substeps] = [t for _, t in calls]
    # per step: V go at t, V go one level down, V back two levels down, V back one level down, the standard step at t
    assert levels["delta"][:5] == [999, 749, 499, 749, 999]
    assert levels["grid"] == [
        t for i, t in enumerate(grid) for t in (t, (grid + [0, 0])[i + 1], (grid + [0, 0])[i + 2], (grid + [0, 0])[i + 1], t)
    ]


# -- refusals before anything loads --------------------------------------------------------------------------------


@pytest.fixture
def nothing_heavy_loads(monkeypatch):
    """Fail the test if any weights start loading."""
    import diffusers
    import safetensors.torch

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded before the request was checked")

    for cls in ("AnimateDiffPipeline", "MotionAdapter", "UNet2DConditionModel"):
        monkeypatch.setattr(getattr(diffusers, cls), "from_pretrained", classmethod(refuse))
    monkeypatch.setattr(safetensors.torch, "load_file", refuse)


@pytest.mark.parametrize("value", [3, 0, 16, "four"])
def test_a_step_count_without_a_checkpoint_is_refused_before_loading(lightning_options, nothing_heavy_loads, value):
    with pytest.raises(ValueError, match=r"option distilled_steps=.*: expected one of 1, 2, 4, 8"):
        ivmixed.load("animatediff-lightning", **lightning_options, distilled_steps=value)


def test_the_cli_refuses_a_bad_step_count_with_status_2_and_writes_nothing(tmp_path, capsys, nothing_heavy_loads):
    out = tmp_path / "clip.gif"
    status = main(["generate", "--backbone", "animatediff-lightning", "-o", "distilled_steps=3", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert "option distilled_steps=3: expected one of 1, 2, 4, 8, or none, got 3" in err
    assert len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option, steps", [([], 4), (["-o", "distilled_steps=8"], 8), (["-o", "distilled_steps=2"], 2)])
def test_program_windows_are_checked_against_the_chosen_checkpoints_step_count(tmp_path, capsys, nothing_heavy_loads, option, steps):
    # found by use: -o distilled_steps=8 ran the window check against the default 4 steps
    out = tmp_path / "clip.gif"
    status = main(["generate", "--backbone", "animatediff-lightning", *option, "--program", f"IV-IV@0..{steps}", "--out", str(out)])
    assert status == 2
    assert f"window 0..{steps} reaches step {steps} but there are only {steps} steps (0..{steps - 1})" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_default_step_count_follows_the_options_without_loading(tmp_path):
    from ivmixed.registry import get_spec

    spec = get_spec("animatediff-lightning")
    assert spec.default_steps_for({}) == 4
    assert spec.default_steps_for({"distilled_steps": 1}) == 1
    local = tmp_path / "animatediff_lightning_8step_diffusers.safetensors"
    local.write_bytes(b"")
    assert spec.default_steps_for({"motion_module": str(local)}) == 8  # a local file's name says its count
    assert get_spec("animatelcm").default_steps_for({"motion_adapter": "x"}) == get_spec("animatelcm").default_steps == 6


def test_a_batch_checks_windows_against_the_chosen_checkpoint_before_loading(tmp_path, nothing_heavy_loads):
    from ivmixed.batch import run_batch

    with pytest.raises(ValueError, match=r"window 0\.\.7 reaches step 7 but there are only 2 steps"):
        run_batch(["a cat"], tmp_path / "out", programs=["IV-IV@0..7"], backbone="animatediff-lightning",
                  backbone_options={"distilled_steps": 2})
    assert not (tmp_path / "out").exists()


def test_missing_files_are_named_before_loading(lightning_options, lcm_options, few_step_models, tmp_path, nothing_heavy_loads):
    absent = tmp_path / "animatediff_lightning_4step_diffusers.safetensors"
    with pytest.raises(MissingWeights, match=rf"no such file or folder: {absent}"):
        ivmixed.load("animatediff-lightning", **{**lightning_options, "motion_module": str(absent)})
    # the folder holds the 4- and 8-step files only
    with pytest.raises(MissingWeights, match=r"none of animatediff_lightning_2step_diffusers.safetensors inside"):
        ivmixed.load("animatediff-lightning", **lightning_options, distilled_steps=2)
    with pytest.raises(MissingWeights, match=r"none of AnimateLCM_sd15_t2v_lora.safetensors inside"):
        ivmixed.load("animatelcm", **{**lcm_options, "lcm_lora": str(few_step_models["lightning"])})
    with pytest.raises(MissingWeights, match=r"no such file or folder: /nope/lcm.safetensors"):
        ivmixed.load("animatelcm", **{**lcm_options, "lcm_lora": "/nope/lcm.safetensors"})


def test_a_file_whose_name_says_another_step_count_is_refused(lightning_options, few_step_models, nothing_heavy_loads):
    file = few_step_models["lightning"] / "animatediff_lightning_8step_diffusers.safetensors"
    with pytest.raises(ValueError, match=r"distilled_steps=4 but -o motion_module=.* is the 8-step checkpoint"):
        ivmixed.load("animatediff-lightning", **{**lightning_options, "motion_module": str(file)}, distilled_steps=4)


def test_a_file_that_is_not_a_diffusers_motion_adapter_is_refused_before_loading(lightning_options, tmp_path, nothing_heavy_loads):
    from safetensors.torch import save_file

    file = tmp_path / "animatediff_lightning_4step_comfyui.safetensors"
    save_file({"down_blocks.0.motion_modules.0.weight": torch.zeros(2)}, str(file))
    from ivmixed.testing.tiny import tiny_motion_adapter

    expected = len(tiny_motion_adapter().state_dict())
    with pytest.raises(ValueError, match=rf"its tensors are not those of a diffusers MotionAdapter of .*: {expected} missing, 1 unexpected .*not the \*_comfyui one"):
        ivmixed.load("animatediff-lightning", **{**lightning_options, "motion_module": str(file)})


@pytest.mark.parametrize(
    ("name", "steps", "grid", "words"),
    [
        ("animatediff-lightning", 4, [999, 749, 499, 249], "EulerDiscreteScheduler, trailing spacing, linear betas"),
        ("animatelcm", 6, [999, 839, 679, 499, 339, 179], "LCMScheduler, linear betas"),
    ],
)
def test_explain_plans_on_the_backbones_own_grid_without_weights(capsys, nothing_heavy_loads, name, steps, grid, words):
    import json

    assert main(["explain", "IV-IV", "--backbone", name, "--steps", str(steps), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [step["t"] for step in info["steps"]] == grid[:3]
    assert main(["explain", "IV-IV", "--backbone", name, "--steps", str(steps)]) == 0
    assert f"grid: {words}" in capsys.readouterr().out


# -- the default ids against the recorded hub layouts ------------------------------------------------------------


@pytest.fixture(scope="module")
def hub_layout_cache(tmp_path_factory):
    """An offline Hugging Face cache with the recorded layouts of the repositories the two backbones use by default."""
    from pathlib import Path

    from ivmixed.backbones.fewstep import ANIMATELCM_REPO, DEFAULT_BASE, DEFAULT_IMAGE_MODEL, LIGHTNING_REPO
    from ivmixed.testing import hub_cache

    layouts = hub_cache.load_layouts(Path(__file__).parent / "data" / "hub_layouts.json")
    cache = tmp_path_factory.mktemp("hf-home") / "hub"
    hub_cache.build_cache(cache, layouts, [LIGHTNING_REPO, ANIMATELCM_REPO, DEFAULT_BASE, DEFAULT_IMAGE_MODEL])
    return cache


@pytest.mark.parametrize("name", ["animatediff-lightning", "animatelcm"])
def test_default_ids_generate_from_the_recorded_hub_layouts(name, hub_layout_cache, few_step_models, tmp_path, monkeypatch):
    """Only the default model ids (the Lightning cache holds tiny files, so their shape is given as a config folder)."""
    import json

    from huggingface_hub import constants

    from ivmixed.registry import get_spec

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_layout_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    extra = ["-o", f"motion_module_config={few_step_models['lightning_config']}"] if name == "animatediff-lightning" else []
    out = tmp_path / "clip.npy"
    run = ["--program", "IV-IV", "--frames", "2", "--height", "32", "--width", "32", "--steps", "4", "--quiet"]
    assert main(["generate", "--backbone", name, "--out", str(out), *extra, *run]) == 0
    assert np.isfinite(np.load(out)).all()
    models = json.loads(out.with_name("clip.npy.json").read_text())["models"]
    defaults = get_spec(name).default_models
    assert {option: models[option] for option in defaults} == defaults


def test_options_the_backbones_do_not_take_are_named_before_loading(lightning_options, lcm_options, nothing_heavy_loads):
    with pytest.raises(ValueError, match=r"'animatediff-lightning' does not take option\(s\) motion_adapter; it takes: motion_module, distilled_steps"):
        ivmixed.load("animatediff-lightning", **lightning_options, motion_adapter="guoyww/animatediff-motion-adapter-v1-5-3")
    with pytest.raises(ValueError, match=r"'animatelcm' does not take option\(s\) lcm_lora_weight; it takes: motion_adapter, lcm_lora, lcm_lora_scale"):
        ivmixed.load("animatelcm", **lcm_options, lcm_lora_weight=0.5)
