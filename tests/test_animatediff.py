"""The ``animatediff`` backbone on tiny random weights, loaded from folders through the real loading path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ivmixed
from ivmixed.testing import BackboneContract, MissingWeightsContract

pytestmark = pytest.mark.usefixtures("torch_single_thread")

PAPER_FORMS = ["origin", "R-I", "RR-II", "R-V", "RR-VV", "I-I", "II-II", "V-V", "VV-VV", "IV-IV", "VI-VI", "II-VV"]
SMALL = dict(frames=3, height=32, width=40, steps=4, progress=False)


@pytest.fixture(scope="module")
def backbone(tiny_animatediff):
    return ivmixed.load("animatediff", **tiny_animatediff)


def stock_pipeline(model: str, motion_adapter: str | None):
    """diffusers' own AnimateDiffPipeline with the DDIM settings of the released code."""
    from diffusers import AnimateDiffPipeline, DDIMScheduler, MotionAdapter

    extra = {"motion_adapter": MotionAdapter.from_pretrained(motion_adapter)} if motion_adapter else {}
    pipe = AnimateDiffPipeline.from_pretrained(model, **extra)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False, timestep_spacing="linspace", steps_offset=1)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class TestContract(BackboneContract, MissingWeightsContract):
    name = "animatediff"
    size = dict(frames=2, height=32, width=32, steps=3)
    prompts = ("two horses race at sunset", "a skier in powder snow")

    @pytest.fixture(scope="class")
    def options(self, tiny_animatediff):
        return tiny_animatediff

    @pytest.fixture(scope="class")
    def missing_options(self):
        ids = ["ivmixed-tests/absent-base", "ivmixed-tests/absent-adapter", "ivmixed-tests/absent-image"]
        options = {"model": ids[0], "motion_adapter": ids[1], "image_model": ids[2], "device": "cpu"}
        return options, ids


# -- origin is the stock pipeline --------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["sd-base+adapter", "animatediff-folder"])
def test_origin_equals_stock_animatediff_pipeline(tiny_models, layout):
    if layout == "sd-base+adapter":
        model, adapter = str(tiny_models.sd15), str(tiny_models.motion_adapter)
    else:
        model, adapter = str(tiny_models.animatediff), None
    options = {"model": model, "image_model": str(tiny_models.image_unet), "device": "cpu"}
    if adapter:
        options["motion_adapter"] = adapter
    ours = ivmixed.load("animatediff", **options)
    prompts, negative = ["two horses race at sunset", "a red car"], "blurry, low quality"
    video = ours.generate(prompts, program="origin", seed=7, guidance=7.5, negative_prompt=negative, **SMALL)

    stock = stock_pipeline(model, adapter)
    expected = stock(
        prompts,
        num_frames=SMALL["frames"],
        height=SMALL["height"],
        width=SMALL["width"],
        num_inference_steps=SMALL["steps"],
        guidance_scale=7.5,
        negative_prompt=[negative] * 2,
        generator=torch.Generator("cpu").manual_seed(7),
        output_type="np",
    ).frames
    difference = float(np.abs(np.asarray(expected) - video.frames).max())
    print(f"animatediff ({layout}) origin vs stock AnimateDiffPipeline: max |Δ| = {difference:.3g}")
    assert video.frames.shape == np.asarray(expected).shape == (2, 3, 32, 40, 3)
    assert difference <= 1e-4


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_v_and_x0_prediction_models_are_converted_to_eps_once(tiny_models, tmp_path, prediction_type):
    """A base whose scheduler config says v- (or x0-) prediction: the adapter converts to ε, the standard step reads ε,
    and origin still equals the stock pipeline, which interprets the raw output through the scheduler."""
    import shutil

    model = tmp_path / "base"
    shutil.copytree(tiny_models.sd15, model)
    config_file = model / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "prediction_type": prediction_type}))
    ours = ivmixed.load("animatediff", model=str(model), motion_adapter=str(tiny_models.motion_adapter), image_model=str(tiny_models.image_unet), device="cpu")
    assert ours.make_scheduler().config.prediction_type == "epsilon"
    video = ours.generate("a horse", program="origin", seed=2, **SMALL)
    expected = stock_pipeline(str(model), str(tiny_models.motion_adapter))(
        "a horse",
        num_frames=SMALL["frames"],
        height=SMALL["height"],
        width=SMALL["width"],
        num_inference_steps=SMALL["steps"],
        generator=torch.Generator("cpu").manual_seed(2),
        output_type="np",
    ).frames
    assert np.abs(np.asarray(expected) - video.frames).max() <= 1e-4


# -- every form of the paper ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def origin_frames(backbone):
    return backbone.generate("two horses race at sunset", program="origin", seed=3, **SMALL).frames


@pytest.mark.parametrize("form", PAPER_FORMS)
def test_every_paper_form_gives_finite_frames(backbone, origin_frames, form):
    video = backbone.generate("two horses race at sunset", program=form, seed=3, **SMALL)
    assert video.frames.shape == (1, 3, 32, 40, 3)
    assert np.isfinite(video.frames).all()
    if form == "IV-IV":
        assert np.abs(video.frames - origin_frames).max() > 1e-3


# -- the reference preset against the released code (reference-code-notes §1.1) -------------------------------

RELEASED_SCALE = 4.000000953674316  # the released float32 Karras ramp with begin = end = 4 (notes §2)


class NetworkCalls:
    """Records, in order, which UNet ran and at which timestep."""

    def __init__(self, backbone):
        self.calls: list[tuple[str, int]] = []
        self.handles = [
            backbone.image_unet.register_forward_pre_hook(self._hook("idm"), with_kwargs=True),
            backbone.unet.register_forward_pre_hook(self._hook("vdm"), with_kwargs=True),
        ]

    def _hook(self, which):
        def record(module, args, kwargs):
            timestep = args[1] if len(args) > 1 else kwargs["timestep"]
            self.calls.append((which, int(timestep)))

        return record

    def close(self):
        for handle in self.handles:
            handle.remove()


def released_animatediff_ops(t: int, delta: int = 20) -> list[tuple]:
    """Ops 1-5 of ``AnimateDiffPipeline.forward_IVIV`` at loop timestep t (zz = 1000: always the image branch).

    (model, eval timestep, from, to, scale): the table of §1.1, with its op-1/op-2 swap.
    """
    prev_t, prev_prev_t = max(0, t - delta), max(0, t - 2 * delta)
    s = RELEASED_SCALE
    return [
        ("idm", prev_t, prev_t, prev_prev_t, s),  # op 1a: image UNet at prev_t, CFG+ sI, DDIM(prev_t)
        ("vdm", t, t, prev_t, s),  # op 2: video UNet at t, CFG+ sV, DDIM(t)
        ("idm", prev_prev_t, prev_prev_t, prev_t, -s),  # op 3a: image UNet at prev_prev_t, CFG− sI, INV(prev_t)
        ("vdm", prev_t, prev_t, t, -s),  # op 4: video UNet at prev_t, CFG− sV, INV(t)
        ("vdm", t, t, None, 7.5),  # op 5: the standard step, video UNet at t, ω = 7.5
    ]


def test_reference_preset_reproduces_the_released_animatediff_sub_steps(backbone):
    events, calls = [], NetworkCalls(backbone)
    try:
        video = backbone.generate("a horse", preset="reference", seed=0, steps=50, frames=2, height=32, width=32, callback=events.append, progress=False, decode=False)
    finally:
        calls.close()
    assert str(video.program) == "IV-IV:ad" and video.settings["guidance"] == 7.5
    timesteps = sorted({e.t_from for e in events if e.letter == "S"}, reverse=True)
    assert timesteps[:6] == [999, 979, 958, 938, 917, 897] and timesteps[-3:] == [41, 20, 0]
    for step in (0, 1, 2, 25, 47, 48, 49):
        t = timesteps[step]
        expected = released_animatediff_ops(t)
        got = [e for e in events if e.step == step]
        assert [(e.model, e.t_from, e.t_to if e.letter != "S" else None, e.scale) for e in got] == [
            (m, t_from, t_to, scale) for m, _, t_from, t_to, scale in expected
        ], f"step {step} (t = {t})"
        # what the networks actually saw: the evaluation timesteps of the released ops
        assert calls.calls[5 * step : 5 * step + 5] == [(m, at) for m, at, _, _, _ in expected]


def test_plain_iv_iv_keeps_the_level_consistent_order_and_exact_4(backbone):
    events = []
    backbone.generate("a horse", seed=0, callback=events.append, **SMALL)
    first = [(e.letter, e.direction, e.t_from, e.t_to, e.scale) for e in events if e.step == 0]
    assert first == [("I", "go", 999, 749, 4.0), ("V", "go", 749, 499, 4.0), ("I", "back", 499, 749, -4.0),
                     ("V", "back", 749, 999, -4.0), ("S", "go", 999, 666, 7.5)]


def test_reference_preset_differs_from_iv_iv_only_by_the_swap_and_the_scale(backbone):
    kw = dict(seed=0, decode=False, **SMALL)
    reference = backbone.generate("a horse", preset="reference", **kw).latents
    same = backbone.generate("a horse", program="IV-IV:ad", zigzag=RELEASED_SCALE, guidance=7.5, **kw).latents
    plain = backbone.generate("a horse", program="IV-IV", **kw).latents
    assert torch.equal(reference, same)  # the same computation on the same tensors
    assert (reference - plain).abs().max() > 1e-3


def test_the_image_model_reads_the_video_text_embeddings(backbone):
    cond = backbone.encode(["a horse", "a car"], ["", "ugly"])
    assert cond.idm is cond.vdm
    assert cond.vdm.shape == (4, 77, 32)  # [uncond; cond] of two prompts, CLIP length 77


# -- image-model layouts, safetensors, LoRA ------------------------------------------------------------------


def test_image_model_from_a_single_safetensors_file(tiny_models, tiny_animatediff):
    from safetensors.torch import load_file

    bb = ivmixed.load("animatediff", **{**tiny_animatediff, "image_model": str(tiny_models.image_unet_file)})
    expected = load_file(str(tiny_models.image_unet_file))
    got = bb.image_unet.state_dict()
    assert all(torch.equal(got[k], v) for k, v in expected.items())
    video = bb.generate("a horse", program="I-I", seed=0, decode=False, **SMALL)
    assert torch.isfinite(video.latents).all()


def test_image_model_from_a_pipeline_folder_uses_its_unet(tiny_models, tiny_animatediff):
    from diffusers import UNet2DConditionModel

    bb = ivmixed.load("animatediff", **{**tiny_animatediff, "image_model": str(tiny_models.sd15_ms)})
    expected = UNet2DConditionModel.from_pretrained(str(tiny_models.sd15_ms), subfolder="unet").state_dict()
    assert all(torch.equal(bb.image_unet.state_dict()[k], v) for k, v in expected.items())


def test_pickled_weights_need_allow_pickle(tiny_models, tiny_animatediff):
    options = {**tiny_animatediff, "image_model": str(tiny_models.image_unet_pickle)}
    with pytest.raises(FileNotFoundError, match="--allow-pickle"):
        ivmixed.load("animatediff", **options)
    bb = ivmixed.load("animatediff", **options, allow_pickle=True)
    assert bb.image_unet is not None


@pytest.mark.parametrize("which", ["lora", "lora_kohya"])
def test_image_lora_changes_the_output_at_scale_1_and_not_at_0(tiny_models, tiny_animatediff, which):
    lora = getattr(tiny_models, which)
    args = dict(program="I-I", seed=5, decode=False, **SMALL)
    plain = ivmixed.load("animatediff", **tiny_animatediff).generate("a horse", **args).latents
    at_0 = ivmixed.load("animatediff", **tiny_animatediff, image_loras=[f"{lora}:0"]).generate("a horse", **args).latents
    at_1 = ivmixed.load("animatediff", **tiny_animatediff, image_loras=[str(lora)]).generate("a horse", **args).latents
    assert torch.equal(at_0, plain)
    assert (at_1 - plain).abs().max().item() > 1e-3


def test_kohya_and_diffusers_lora_files_give_the_same_weights(tiny_models, tiny_animatediff):
    args = dict(program="I-I", seed=5, decode=False, **SMALL)
    a = ivmixed.load("animatediff", **tiny_animatediff, image_loras=[f"{tiny_models.lora}:0.7"]).generate("a", **args).latents
    b = ivmixed.load("animatediff", **tiny_animatediff, image_loras=[f"{tiny_models.lora_kohya}:0.7"]).generate("a", **args).latents
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_the_lora_touches_only_the_image_model(tiny_models, tiny_animatediff):
    args = dict(program="V-V", seed=5, decode=False, **SMALL)
    plain = ivmixed.load("animatediff", **tiny_animatediff).generate("a", **args).latents
    with_lora = ivmixed.load("animatediff", **tiny_animatediff, image_loras=[str(tiny_models.lora)]).generate("a", **args).latents
    assert torch.equal(plain, with_lora)


# -- requests the models cannot serve, outputs ------------------------------------------------------------


def test_more_frames_than_the_motion_module_has_slots_is_refused(backbone):
    with pytest.raises(ValueError, match="at most 32 frames"):
        backbone.generate("a horse", frames=33, steps=2, height=32, width=32, progress=False)


@pytest.mark.parametrize("suffix", [".mp4", ".gif", ".npy"])
def test_cli_writes_video_and_manifest(tiny_animatediff, tmp_path, suffix, capsys):
    from ivmixed.cli import main

    out = tmp_path / f"horses{suffix}"
    argv = ["generate", "--backbone", "animatediff", "--prompt", "Two horses race across a grassy field at sunset."]
    argv += ["--program", "IV-IV", "--steps", "2", "--frames", "2", "--height", "32", "--width", "32", "--seed", "4"]
    argv += ["--model", tiny_animatediff["model"], "-o", f"motion_adapter={tiny_animatediff['motion_adapter']}"]
    argv += ["--image-model", tiny_animatediff["image_model"], "--device", "cpu", "--dtype", "fp32", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert out.is_file() and out.stat().st_size > 0
    manifest = json.loads(out.with_name(out.name + ".json").read_text())
    assert manifest["backbone"] == "animatediff"
    assert manifest["program"] == "IV-IV" and manifest["seed"] == 4
    assert manifest["models"] == {k: tiny_animatediff[k] for k in ("model", "motion_adapter", "image_model")}
    assert manifest["dtype"] == "fp32" and manifest["device"] == "cpu"
    assert manifest["cost"] == {"idm_image_evals": 2 * 2 * 2 * 2, "vdm_clip_evals": (2 + 1) * 2 * 2}
    assert {"torch", "diffusers"} <= set(manifest["versions"])
    if suffix == ".npy":
        frames = np.load(out)
        assert frames.shape == (2, 32, 32, 3) and frames.dtype == np.float32
        assert 0.0 <= frames.min() and frames.max() <= 1.0


def test_reference_preset_decodes_as_the_released_pipeline(backbone):
    """The VAE in float32 and the decoded video rounded to fp16 before post-processing (notes §1.1)."""
    from diffusers.video_processor import VideoProcessor

    from ivmixed.steps import fold_frames, unfold_frames

    video = backbone.generate("a horse", preset="reference", seed=0, **SMALL)
    latents = video.latents
    with torch.no_grad():
        decoded = backbone.vae.decode(fold_frames(1 / backbone.vae.config.scaling_factor * latents.float())).sample  # fp32 here
    released = VideoProcessor(do_resize=False).postprocess_video(unfold_frames(decoded, 3).half(), output_type="np")
    assert released.dtype == np.float16 or released.dtype == np.float32
    assert np.array_equal(video.frames, released.astype(np.float32))
    plain = backbone.decode(latents).numpy()  # the default decode: no fp16 rounding
    assert 0 < np.abs(video.frames - plain).max() <= 2**-10
    assert backbone.vae.dtype == backbone.dtype
