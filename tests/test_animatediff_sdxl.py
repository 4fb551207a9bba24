"""The ``animatediff-sdxl`` backbone on tiny random SDXL weights, loaded from folders through the real loading path."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import ivmixed
from ivmixed.backbones.base import IncompatibleModels
from ivmixed.testing import BackboneContract, MissingWeightsContract

pytestmark = pytest.mark.usefixtures("torch_single_thread")

PAPER_FORMS = ["origin", "R-I", "RR-II", "R-V", "RR-VV", "I-I", "II-II", "V-V", "VV-VV", "IV-IV", "VI-VI", "II-VV", "IV-IV@66.7%"]
SMALL = dict(frames=3, height=32, width=40, steps=4, progress=False)


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    from ivmixed.testing import tiny

    root = tmp_path_factory.mktemp("tiny_sdxl")
    models = tiny.build_sdxl(root)
    return SimpleNamespace(**vars(models), sd15=tiny.save_sd15(root / "sd15", seed=60))


@pytest.fixture(scope="module")
def options(sdxl) -> dict:
    return {"model": str(sdxl.base), "motion_adapter": str(sdxl.motion_adapter), "image_model": str(sdxl.finetune), "device": "cpu"}


@pytest.fixture(scope="module")
def backbone(options):
    return ivmixed.load("animatediff-sdxl", **options)


def stock_pipeline(model: str, motion_adapter: str | None):
    """diffusers' own AnimateDiffSDXLPipeline with the DDIM standard step of the backbone.

    With a 2-D base, ``UNetMotionModel.from_unet2d`` leaves the motion UNet's ``add_embedding`` at a random
    initialisation (diffusers 0.42); the base's is put back, as the backbone does, so both run the same weights.
    """
    from diffusers import AnimateDiffSDXLPipeline, DDIMScheduler, MotionAdapter, UNet2DConditionModel

    extra = {"motion_adapter": MotionAdapter.from_pretrained(motion_adapter)} if motion_adapter else {}
    pipe = AnimateDiffSDXLPipeline.from_pretrained(model, **extra)
    if motion_adapter:
        pipe.unet.add_embedding.load_state_dict(UNet2DConditionModel.from_pretrained(model, subfolder="unet").add_embedding.state_dict())
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False, timestep_spacing="linspace", steps_offset=1)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class TestContract(BackboneContract, MissingWeightsContract):
    name = "animatediff-sdxl"
    size = dict(frames=2, height=32, width=32, steps=3)
    prompts = ("a panda plays a guitar", "a skier in powder snow")

    @pytest.fixture(scope="class")
    def options(self, options):
        return options

    @pytest.fixture(scope="class")
    def missing_options(self):
        ids = ["ivmixed-tests/absent-sdxl-base", "ivmixed-tests/absent-sdxl-adapter", "ivmixed-tests/absent-sdxl-image"]
        return {"model": ids[0], "motion_adapter": ids[1], "image_model": ids[2], "device": "cpu"}, ids


# -- origin is the stock pipeline --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layout, negative, sizes",
    [
        ("sdxl-base+adapter", None, {}),
        ("sdxl-base+adapter", "blurry, low quality", {"original_size": (64, 48), "crops_coords_top_left": (4, 8), "target_size": (40, 56)}),
        ("animatediff-sdxl-folder", "blurry, low quality", {}),
    ],
)
def test_origin_equals_stock_animatediff_sdxl_pipeline(sdxl, layout, negative, sizes):
    if layout == "sdxl-base+adapter":
        model, adapter = str(sdxl.base), str(sdxl.motion_adapter)
    else:
        model, adapter = str(sdxl.pipeline), None
    options = {"model": model, "image_model": str(sdxl.image_unet), "device": "cpu"}
    if sizes:
        (oh, ow), (top, left), (th, tw) = sizes["original_size"], sizes["crops_coords_top_left"], sizes["target_size"]
        options.update(original_height=oh, original_width=ow, crop_top=top, crop_left=left, target_height=th, target_width=tw)
    if adapter:
        options["motion_adapter"] = adapter
    ours = ivmixed.load("animatediff-sdxl", **options)
    prompts = ["a panda plays a guitar", "a red car"]
    video = ours.generate(prompts, program="origin", seed=7, guidance=7.5, negative_prompt=negative, **SMALL)

    stock = stock_pipeline(model, adapter)
    kwargs = dict(
        num_frames=SMALL["frames"],
        height=SMALL["height"],
        width=SMALL["width"],
        num_inference_steps=SMALL["steps"],
        guidance_scale=7.5,
        negative_prompt=None if negative is None else [negative] * 2,
        **sizes,
    )
    final = {}

    def keep_latents(pipe, step, timestep, tensors):
        final.update(tensors)
        return tensors

    frames = stock(prompts, generator=torch.Generator("cpu").manual_seed(7), output_type="np", callback_on_step_end=keep_latents, **kwargs).frames
    frames, latents = np.asarray(frames), final["latents"]  # after the last step, before decoding
    latent_gap = float((latents - video.latents).abs().max())
    frame_gap = float(np.abs(frames - video.frames).max())
    print(f"animatediff-sdxl ({layout}, negative={negative!r}, {sizes}) origin vs stock: latents {latent_gap:.3g}, frames {frame_gap:.3g}")
    assert video.frames.shape == frames.shape == (2, 3, 32, 40, 3)
    assert latent_gap <= 1e-4 and frame_gap <= 1e-4


def test_the_encoding_is_the_stock_pipelines(backbone, sdxl):
    """Both encoders, the pooled embedding, and zeros for an empty negative prompt (force_zeros_for_empty_prompt)."""
    stock = stock_pipeline(str(sdxl.base), str(sdxl.motion_adapter))
    prompts = ["a panda plays a guitar", "a red car"]
    for negatives, stock_negative in ((["", ""], None), (["ugly", "dark"], ["ugly", "dark"])):
        embeds, neg_embeds, pooled, neg_pooled = stock.encode_prompt(
            prompts, device="cpu", num_videos_per_prompt=1, do_classifier_free_guidance=True, negative_prompt=stock_negative
        )
        cond = backbone.encode(prompts, negatives)
        assert cond.idm is cond.vdm  # the image model reads the video model's embeddings
        assert cond.vdm.embeds.shape == (4, 77, 16 + 24) and cond.vdm.pooled.shape == (4, 20)
        assert torch.equal(cond.vdm.embeds, torch.cat([neg_embeds, embeds]))
        assert torch.equal(cond.vdm.pooled, torch.cat([neg_pooled, pooled]))
    assert torch.count_nonzero(backbone.encode(["a"], [""]).vdm.embeds[0]) == 0


def test_the_motion_unet_keeps_the_bases_added_embedding(backbone, sdxl):
    from diffusers import UNet2DConditionModel

    base = UNet2DConditionModel.from_pretrained(str(sdxl.base), subfolder="unet").add_embedding.state_dict()
    ours = backbone.unet.add_embedding.state_dict()
    assert base.keys() == ours.keys() and all(torch.equal(ours[k], v) for k, v in base.items())


# -- what each UNet is given ---------------------------------------------------------------------------------


class AddedCond:
    """Records the ``added_cond_kwargs`` and text rows of every call of a UNet."""

    def __init__(self, unet):
        self.calls: list[dict] = []
        self.handle = unet.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        added = kwargs["added_cond_kwargs"]
        self.calls.append({"rows": args[0].shape[0], "hidden": kwargs["encoder_hidden_states"], **added})


def test_each_unet_gets_pooled_embeddings_and_size_ids_per_row(backbone):
    cond = backbone.encode(["a panda", "a car"], ["", "ugly"])
    idm, vdm = AddedCond(backbone.image_unet), AddedCond(backbone.unet)
    try:
        x = torch.randn(4, 4, 3, 4, 5)  # [uncond; cond] of two clips, 3 frames of 32×40 pixels
        backbone.idm(x, 500, cond.idm)
        backbone.vdm(x, 500, cond.vdm)
    finally:
        idm.handle.remove()
        vdm.handle.remove()
    (image,), (video,) = idm.calls, vdm.calls
    ids = torch.tensor([[32.0, 40.0, 0.0, 0.0, 32.0, 40.0]])
    # the image UNet sees 12 images, frame fastest: every tensor repeated per frame
    assert image["rows"] == 12 and torch.equal(image["time_ids"], ids.repeat(12, 1))
    assert torch.equal(image["text_embeds"], cond.idm.pooled.repeat_interleave(3, dim=0))
    assert torch.equal(image["hidden"], cond.idm.embeds.repeat_interleave(3, dim=0))
    # the motion UNet sees 4 clips: text per frame, pooled embedding and ids per clip
    assert video["rows"] == 4 and torch.equal(video["time_ids"], ids.repeat(4, 1))
    assert torch.equal(video["text_embeds"], cond.vdm.pooled)
    assert torch.equal(video["hidden"], cond.vdm.embeds.repeat_interleave(3, dim=0))


def test_size_options_set_the_ids_and_bad_ones_are_refused_before_loading(options, nothing_heavy_loads):
    from ivmixed.backbones._animatediff_sdxl_impl import SizeConditioning

    assert SizeConditioning((64, 48), (4, 8), None).time_ids(32, 40) == [64, 48, 4, 8, 32, 40]
    assert SizeConditioning().time_ids(32, 40) == [32, 40, 0, 0, 32, 40]
    with pytest.raises(ValueError, match="option original_height is given without original_width: give both"):
        ivmixed.load("animatediff-sdxl", **{**options, "original_height": 1024})
    with pytest.raises(ValueError, match=r"option target_width=0: expected an integer, 1 <= target_width <= 16384"):
        ivmixed.load("animatediff-sdxl", **{**options, "target_height": 64, "target_width": 0})
    with pytest.raises(ValueError, match=r"option crop_top=-1: expected an integer, 0 <= crop_top"):
        ivmixed.load("animatediff-sdxl", **{**options, "crop_top": -1})


# -- every form of the paper ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def origin_frames(backbone):
    return backbone.generate("a panda plays a guitar", program="origin", seed=3, **SMALL).frames


@pytest.mark.parametrize("form", PAPER_FORMS + ["preset:reference"])
def test_every_paper_form_gives_finite_frames(backbone, origin_frames, form):
    kwargs = {"preset": "reference"} if form == "preset:reference" else {"program": form}
    video = backbone.generate("a panda plays a guitar", seed=3, **kwargs, **SMALL)
    assert video.frames.shape == (1, 3, 32, 40, 3)
    assert np.isfinite(video.frames).all()
    if form in ("IV-IV", "I-I", "preset:reference"):
        assert np.abs(video.frames - origin_frames).max() > 1e-3
    if form == "preset:reference":
        assert str(video.program) == "IV-IV:ad" and video.settings["guidance"] == 7.5


# -- the pair check: before any weight loads -----------------------------------------------------------------


@pytest.fixture
def nothing_heavy_loads(monkeypatch):
    """Fail the test if any weights start loading."""
    import diffusers

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded before the request was checked")

    for cls in ("AnimateDiffSDXLPipeline", "MotionAdapter", "UNet2DConditionModel", "AutoencoderKL"):
        monkeypatch.setattr(getattr(diffusers, cls), "from_pretrained", classmethod(refuse))
    monkeypatch.setattr(diffusers.UNet2DConditionModel, "from_single_file", classmethod(refuse))


@pytest.mark.parametrize(
    "override, message",
    [
        ({"image_model": "sd15"}, r"image model .*sd15 is not an SDXL UNet \(addition_embed_type None, SDXL's is 'text_time'"),
        ({"image_model": "image_unet_8ch"}, r"image model .* works on 8-channel latents but the video model .* on 4"),
        ({"image_model": "image_unet_narrow"}, r"image model .* expects 32-wide text embeddings but the video model .*give 40-wide"),
        ({"image_model": "other_betas"}, r"different noise tables"),
        ({"model": "sd15"}, r"video model .*sd15 is not an SDXL base .*use --backbone animatediff"),
    ],
)
def test_incompatible_models_are_refused_before_loading(sdxl, options, nothing_heavy_loads, override, message):
    changed = {key: str(getattr(sdxl, value)) for key, value in override.items()}
    with pytest.raises(IncompatibleModels, match=message):
        ivmixed.load("animatediff-sdxl", **{**options, **changed})


def test_a_motion_adapter_of_another_unet_is_refused_before_loading(sdxl, options, tmp_path, nothing_heavy_loads):
    adapter = tmp_path / "adapter_sd15_like"
    adapter.mkdir()
    config = json.loads((sdxl.motion_adapter / "config.json").read_text())
    (adapter / "config.json").write_text(json.dumps({**config, "block_out_channels": [8, 16, 32, 32]}))
    with pytest.raises(IncompatibleModels, match=r"motion adapter .* blocks \[8, 16, 32, 32\].*SDXL bases need an SDXL motion adapter"):
        ivmixed.load("animatediff-sdxl", **{**options, "motion_adapter": str(adapter)})


def test_the_real_architectures_pass_the_sdxl_check_and_sd15_ones_do_not():
    """The recorded configs of the default models (ivmixed.testing.real_models): SDXL base + SDXL adapter + SDXL image
    UNet pass; the SD1.5 UNet as the image model, and the SD1.5 adapter v1-5-3 on the SDXL base, are refused."""
    from ivmixed.backbones._animatediff_sdxl_impl import check_sdxl_models
    from ivmixed.testing.real_models import MODELS

    config = {name: dict(MODELS[name].config) for name in ("sdxl_unet", "motion_adapter_sdxl", "sd15_unet", "motion_adapter_v1_5_3", "clip_l_text", "openclip_bigg_text")}
    widths = dict(
        text_dim=config["clip_l_text"]["hidden_size"] + config["openclip_bigg_text"]["hidden_size"],
        pooled_dim=config["openclip_bigg_text"]["projection_dim"],
    )
    assert widths == {"text_dim": 2048, "pooled_dim": 1280}
    check_sdxl_models(vdm_unet=config["sdxl_unet"], idm_unet=config["sdxl_unet"], adapter=config["motion_adapter_sdxl"], **widths)
    with pytest.raises(IncompatibleModels, match="is not an SDXL UNet"):
        check_sdxl_models(vdm_unet=config["sdxl_unet"], idm_unet=config["sd15_unet"], adapter=config["motion_adapter_sdxl"], **widths)
    with pytest.raises(IncompatibleModels, match=r"blocks \[320, 640, 1280, 1280\].*blocks \[320, 640, 1280\]"):
        check_sdxl_models(vdm_unet=config["sdxl_unet"], idm_unet=config["sdxl_unet"], adapter=config["motion_adapter_v1_5_3"], **widths)


def test_cli_refuses_an_sd15_image_model_in_one_line_with_exit_2(sdxl, options, tmp_path, capsys):
    from ivmixed.cli import main

    out = tmp_path / "v.npy"
    argv = ["generate", "--backbone", "animatediff-sdxl", "--prompt", "a panda", "--steps", "2", "--frames", "2"]
    argv += ["--height", "32", "--width", "32", "--model", options["model"], "-o", f"motion_adapter={options['motion_adapter']}"]
    argv += ["--image-model", str(sdxl.sd15), "--device", "cpu", "--out", str(out), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not an SDXL UNet" in err
    assert not any(tmp_path.iterdir())


# -- the default hub ids, against the recorded repository layouts ---------------------------------------------


def test_default_ids_load_and_run_from_the_recorded_hub_layouts(tmp_path, monkeypatch):
    """No model option: the SDXL base (video base and image model) and the SDXL adapter, from an offline cache
    written from tests/data/hub_layouts.json; under fp16 every model would load its published fp16 files."""
    from huggingface_hub import constants

    from ivmixed.backbones.diffusers import plan_weights
    from ivmixed.backbones.animatediff_sdxl import DEFAULT_MODEL, DEFAULT_MOTION_ADAPTER
    from ivmixed.testing import hub_cache

    layouts = hub_cache.load_layouts(Path(__file__).parent / "data" / "hub_layouts.json")
    cache = tmp_path / "hub"
    hub_cache.build_cache(cache, layouts, [DEFAULT_MODEL, DEFAULT_MOTION_ADAPTER])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bb = ivmixed.load("animatediff-sdxl", device="cpu")
    assert {k: v.source for k, v in bb.locations.items()} == {"model": DEFAULT_MODEL, "motion_adapter": DEFAULT_MOTION_ADAPTER, "image_model": DEFAULT_MODEL}
    assert bb.variants == {"model": None, "motion_adapter": None, "image_model": None}  # fp32 on the CPU: the plain files
    fp16 = {o: plan_weights(bb.locations[o], folders, None, dtype=torch.float16, allow_pickle=False) for o, folders in bb.weight_folders().items()}
    assert fp16 == {"model": "fp16", "motion_adapter": "fp16", "image_model": "fp16"}
    video = bb.generate("a panda", program="IV-IV", seed=0, steps=2, frames=2, height=32, width=32, progress=False)
    assert np.isfinite(video.frames).all()


# -- image-model layouts, LoRA --------------------------------------------------------------------------------


def test_the_default_image_model_is_the_video_models_base(sdxl, options):
    from diffusers import UNet2DConditionModel

    bb = ivmixed.load("animatediff-sdxl", **{k: v for k, v in options.items() if k != "image_model"})
    assert bb.locations["image_model"].path == str(sdxl.base)
    expected = UNet2DConditionModel.from_pretrained(str(sdxl.base), subfolder="unet").state_dict()
    assert all(torch.equal(bb.image_unet.state_dict()[k], v) for k, v in expected.items())


def test_image_model_from_a_single_safetensors_file(sdxl, options):
    from safetensors.torch import load_file

    bb = ivmixed.load("animatediff-sdxl", **{**options, "image_model": str(sdxl.image_unet_file)})
    expected = load_file(str(sdxl.image_unet_file))
    got = bb.image_unet.state_dict()
    assert expected.keys() == got.keys() and all(torch.equal(got[k], v) for k, v in expected.items())
    assert bb.image_unet.config.addition_embed_type == "text_time"
    video = bb.generate("a panda", program="I-I", seed=0, decode=False, **SMALL)
    assert torch.isfinite(video.latents).all()


def test_image_lora_changes_only_the_image_model(tmp_path, sdxl, options, backbone):
    from ivmixed.testing import tiny

    lora = tiny.save_peft_lora(tmp_path / "sdxl_lora.safetensors", sdxl.finetune, seed=61)
    plain = backbone
    with_lora = ivmixed.load("animatediff-sdxl", **options, image_loras=[str(lora)])
    args = dict(seed=5, decode=False, **SMALL)
    assert (with_lora.generate("a", program="I-I", **args).latents - plain.generate("a", program="I-I", **args).latents).abs().max() > 1e-3
    assert torch.equal(with_lora.generate("a", program="V-V", **args).latents, plain.generate("a", program="V-V", **args).latents)


# -- decoding: SDXL's VAE overflows in fp16 ----------------------------------------------------------------


@pytest.mark.parametrize("force_upcast", [True, False])
def test_fp16_vae_decodes_as_the_stock_pipeline(force_upcast):
    """An fp16 VAE with ``force_upcast`` decodes in float32 and goes back to fp16 (StableDiffusionXLPipeline's upcast:
    the whole VAE); without it, it decodes in fp16. Compared with the stock ``decode_latents`` on the VAE so cast."""
    from diffusers import AnimateDiffSDXLPipeline
    from diffusers.video_processor import VideoProcessor

    from ivmixed.backbones._animatediff_sdxl_impl import decode_sdxl_video
    from ivmixed.testing.tiny import tiny_sdxl_vae

    vae = tiny_sdxl_vae(seed=62)
    vae.register_to_config(force_upcast=force_upcast)
    vae.to(torch.float16)
    latents = torch.randn(1, 4, 2, 4, 4, generator=torch.Generator().manual_seed(0)).half()
    seen = []
    handle = vae.decoder.up_blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    try:
        ours = decode_sdxl_video(vae, latents, chunk_size=2)
    finally:
        handle.remove()
    assert seen == [torch.float32 if force_upcast else torch.float16]
    assert vae.dtype == torch.float16

    stock = SimpleNamespace(vae=vae.to(torch.float32) if force_upcast else vae)
    with torch.no_grad():
        video = AnimateDiffSDXLPipeline.decode_latents(stock, latents.to(vae.dtype))
    vae.to(torch.float16)
    expected = VideoProcessor(do_resize=False).postprocess_video(video, output_type="np")
    assert np.array_equal(expected, ours.numpy())  # the same computation on the same tensors


# -- requests the models cannot serve, outputs ------------------------------------------------------------


def test_more_frames_than_the_motion_module_has_slots_is_refused(backbone):
    with pytest.raises(ValueError, match="at most 32 frames"):
        backbone.generate("a panda", frames=33, steps=2, height=32, width=32, progress=False)


def test_cli_writes_video_and_manifest(options, tmp_path):
    from ivmixed.cli import main

    out = tmp_path / "panda.npy"
    argv = ["generate", "--backbone", "animatediff-sdxl", "--prompt", "A panda playing a guitar on a sunny beach."]
    argv += ["--program", "IV-IV", "--steps", "2", "--frames", "2", "--height", "32", "--width", "32", "--seed", "4"]
    argv += ["--model", options["model"], "-o", f"motion_adapter={options['motion_adapter']}"]
    argv += ["-o", "original_height=1024", "-o", "original_width=1024"]
    argv += ["--image-model", options["image_model"], "--device", "cpu", "--dtype", "fp32", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    frames = np.load(out)
    assert frames.shape == (2, 32, 32, 3) and frames.dtype == np.float32 and np.isfinite(frames).all()
    manifest = json.loads(out.with_name(out.name + ".json").read_text())
    assert manifest["backbone"] == "animatediff-sdxl" and manifest["program"] == "IV-IV" and manifest["seed"] == 4
    assert manifest["models"] == {k: options[k] for k in ("model", "motion_adapter", "image_model")}
    assert manifest["size_conditioning"] == {"original_size": [1024, 1024], "crops_coords_top_left": [0, 0], "target_size": "video size"}
    assert manifest["cost"] == {"idm_image_evals": 2 * 2 * 2 * 2, "vdm_clip_evals": (2 + 1) * 2 * 2}


def test_list_shows_the_backbone_and_its_options(capsys):
    from ivmixed.cli import main

    assert main(["list"]) == 0
    assert "animatediff-sdxl" in capsys.readouterr().out
    assert main(["list", "--options", "animatediff-sdxl"]) == 0
    listing = capsys.readouterr().out
    for option in ("motion_adapter", "image_model", "original_height", "crop_left", "target_width", "vae"):
        assert f"  {option} " in listing
    assert "guoyww/animatediff-motion-adapter-sdxl-beta" in listing
