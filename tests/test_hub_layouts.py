"""The first run: every backbone with its default hub ids and no path option, against the real repository layouts.

``tests/data/hub_layouts.json`` records the files, folders and revisions of every default repository;
:mod:`ivmixed.testing.hub_cache` writes them, with tiny random weights (pickles where the real files are
pickles), into an offline Hugging Face cache. The backbones then load exactly what a user's first run
loads: which revision, which files, which variant, and which refusal.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ivmixed
from ivmixed.backbones.diffusers import MissingWeights, UnsafeWeights
from ivmixed.cli import main
from ivmixed.registry import get_spec
from ivmixed.testing import hub_cache

pytestmark = pytest.mark.usefixtures("torch_single_thread")

LAYOUTS_FILE = Path(__file__).parent / "data" / "hub_layouts.json"


#: every backbone with recorded default ids (a backbone removed from pyproject.toml fails here, it is not skipped)
BACKBONES = ["animatediff", "modelscope", "videocrafter2", "animatediff-sdxl", "animatediff-lightning", "animatelcm"]

TINY_RUN = ["--program", "IV-IV", "--frames", "2", "--height", "32", "--width", "32", "--steps", "2", "--quiet"]


def _manifest(out: Path) -> dict:
    return json.loads(Path(str(out) + ".json").read_text())


@pytest.fixture(scope="module")
def layouts() -> dict:
    return hub_cache.load_layouts(LAYOUTS_FILE)


@pytest.fixture(scope="module")
def real_layout_cache(tmp_path_factory, layouts) -> Path:
    cache = tmp_path_factory.mktemp("hf-home") / "hub"
    hub_cache.build_cache(cache, layouts)
    return cache


@pytest.fixture
def use_cache(real_layout_cache, monkeypatch):
    """The real-layout cache as this process's Hugging Face cache, hub offline."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(real_layout_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return real_layout_cache


# -- the recorded layouts ---------------------------------------------------------------------------------------


def test_layouts_cover_every_default_id_of_every_backbone(layouts):
    for name in BACKBONES:
        for option, model_id in get_spec(name).default_models.items():
            assert model_id in layouts["repositories"], f"{name} {option}={model_id} has no recorded layout"
            assert f"{name}:{option}" in layouts["repositories"][model_id]["default_of"]


def test_every_recorded_file_says_where_it_is_known_from(layouts):
    for repo_id, repo in layouts["repositories"].items():
        for revision, tree in repo["revisions"].items():
            assert tree["files"], f"{repo_id}@{revision} lists no file"
            for entry in tree["files"]:
                assert entry["evidence"] in {"listing", "third-party", "assumed"}, (repo_id, entry)


def test_the_cache_is_what_huggingface_hub_reads(real_layout_cache, layouts):
    from huggingface_hub import scan_cache_dir, try_to_load_from_cache

    info = scan_cache_dir(real_layout_cache)
    assert {repo.repo_id for repo in info.repos} == set(layouts["repositories"])
    assert not info.warnings
    zeroscope = "cerspense/zeroscope_v2_576w"
    on_main = try_to_load_from_cache(zeroscope, "text_encoder/model.safetensors", cache_dir=real_layout_cache)
    on_pr = try_to_load_from_cache(zeroscope, "text_encoder/model.safetensors", cache_dir=real_layout_cache, revision="refs/pr/46")
    assert on_main is None and isinstance(on_pr, str)
    pickle = try_to_load_from_cache(zeroscope, "text_encoder/pytorch_model.bin", cache_dir=real_layout_cache)
    with open(pickle, "rb") as fh:
        assert fh.read(2) == b"PK"  # torch.save's zip container: a pickle, as the real file is
    rv6 = try_to_load_from_cache("SG161222/Realistic_Vision_V6.0_B1_noVAE", "unet/diffusion_pytorch_model.bin", cache_dir=real_layout_cache)
    assert torch.load(rv6, weights_only=True)  # loads as a state dict


# -- the SDXL and few-step repositories: the stock recipes' first run --------------------------------------------

SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_ADAPTER = "guoyww/animatediff-motion-adapter-sdxl-beta"
LIGHTNING = "ByteDance/AnimateDiff-Lightning"
ANIMATELCM = "wangfuyun/AnimateLCM"
EPICREALISM = "emilianJR/epiCRealism"
FAMILY_REPOS = [SDXL, SDXL_ADAPTER, LIGHTNING, ANIMATELCM, EPICREALISM]


def _latents(pipe, **kwargs) -> torch.Tensor:
    out = pipe("a horse", num_frames=2, height=32, width=32, num_inference_steps=1, output_type="latent",
               generator=torch.Generator().manual_seed(0), **kwargs)
    return out.frames


def test_the_family_repositories_are_recorded_with_their_weight_formats(layouts):
    repos = layouts["repositories"]
    assert set(FAMILY_REPOS) <= set(repos)

    def files(repo_id):
        return {e["path"] for e in repos[repo_id]["revisions"]["main"]["files"]}

    # SDXL: every component the pipeline loads has plain and fp16 safetensors; its .bin files are OpenVINO's
    for component in ("unet", "vae"):
        assert {f"{component}/diffusion_pytorch_model.safetensors", f"{component}/diffusion_pytorch_model.fp16.safetensors"} <= files(SDXL)
    for component in ("text_encoder", "text_encoder_2"):
        assert {f"{component}/model.safetensors", f"{component}/model.fp16.safetensors"} <= files(SDXL)
    assert {p for p in files(SDXL) if p.endswith(".bin")} == {f"{c}/openvino_model.bin" for c in ("unet", "text_encoder", "text_encoder_2", "vae_decoder", "vae_encoder")}
    # Lightning: four single files, no folder, no config, fp16 values
    lightning = {e["path"]: e for e in repos[LIGHTNING]["revisions"]["main"]["files"]}
    assert not any(p.endswith("config.json") for p in lightning)
    for steps in (1, 2, 4, 8):
        assert lightning[f"animatediff_lightning_{steps}step_diffusers.safetensors"]["dtype"] == "fp16"
    # AnimateLCM: a diffusers adapter at the root plus the LoRA; epiCRealism: safetensors beside the pickles, no fp16
    assert {"config.json", "diffusion_pytorch_model.safetensors", "AnimateLCM_sd15_t2v_lora.safetensors"} <= files(ANIMATELCM)
    assert not any(".fp16." in p for p in files(EPICREALISM))
    for component in ("unet", "vae"):
        assert {f"{component}/diffusion_pytorch_model.safetensors", f"{component}/diffusion_pytorch_model.bin"} <= files(EPICREALISM)


def test_stock_animatediff_sdxl_runs_from_the_hub_ids_offline(use_cache):
    from diffusers import AnimateDiffSDXLPipeline, MotionAdapter

    # what the model cards do on CUDA: fp16 files of both repositories, safetensors only
    adapter = MotionAdapter.from_pretrained(SDXL_ADAPTER, variant="fp16", use_safetensors=True)
    pipe = AnimateDiffSDXLPipeline.from_pretrained(SDXL, motion_adapter=adapter, variant="fp16", use_safetensors=True, torch_dtype=torch.float32)
    assert pipe.vae.config.force_upcast is True and pipe.vae.config.scaling_factor == 0.13025
    assert pipe.unet.config.addition_embed_type == "text_time"
    latents = _latents(pipe)
    assert latents.shape == (1, 4, 2, 4, 4) and torch.isfinite(latents).all()


def test_stock_lightning_and_animatelcm_recipes_run_from_the_hub_ids_offline(use_cache):
    from diffusers import AnimateDiffPipeline, EulerDiscreteScheduler, LCMScheduler, MotionAdapter
    from huggingface_hub import hf_hub_download
    from safetensors.torch import load_file

    from ivmixed.testing import tiny

    # Lightning: a MotionAdapter of the default shape (tiny here) filled from the single file of the chosen step count
    adapter = tiny.tiny_motion_adapter()
    state = load_file(hf_hub_download(LIGHTNING, "animatediff_lightning_4step_diffusers.safetensors"))
    assert {v.dtype for v in state.values()} == {torch.float16}
    adapter.load_state_dict(state)
    pipe = AnimateDiffPipeline.from_pretrained(EPICREALISM, motion_adapter=adapter, use_safetensors=True, torch_dtype=torch.float32)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing", beta_schedule="linear")
    assert torch.isfinite(_latents(pipe, guidance_scale=1.0)).all()
    # AnimateLCM: the adapter from the repository root, the LoRA from the same repository
    adapter = MotionAdapter.from_pretrained(ANIMATELCM, use_safetensors=True)
    pipe = AnimateDiffPipeline.from_pretrained(EPICREALISM, motion_adapter=adapter, use_safetensors=True, torch_dtype=torch.float32)
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config, beta_schedule="linear")
    pipe.load_lora_weights(ANIMATELCM, weight_name="AnimateLCM_sd15_t2v_lora.safetensors", adapter_name="lcm-lora")
    pipe.set_adapters(["lcm-lora"], [0.8])
    assert torch.isfinite(_latents(pipe, guidance_scale=1.5)).all()


def test_epicrealism_has_no_fp16_files(use_cache):
    from diffusers import UNet2DConditionModel

    with pytest.raises(Exception, match="fp16"):
        UNet2DConditionModel.from_pretrained(EPICREALISM, subfolder="unet", variant="fp16", use_safetensors=True)


# -- the first run, defaults only ---------------------------------------------------------------------------------


def _architecture_options(name: str, tmp_path: Path) -> list[str]:
    """The one option a tiny cache needs: AnimateDiff-Lightning's files carry no config, so the backbone builds
    diffusers' default (full-size) MotionAdapter for them; the tiny files need the tiny architecture instead."""
    if name != "animatediff-lightning":
        return []
    from ivmixed.testing import tiny

    return ["-o", f"motion_module_config={tiny.save_motion_adapter_config(tmp_path / 'lightning-architecture')}"]


@pytest.mark.parametrize("name", BACKBONES)
def test_default_ids_no_path_options_generate(name, use_cache, tmp_path):
    out = tmp_path / f"{name}.npy"
    assert main(["generate", "--backbone", name, "--out", str(out), *_architecture_options(name, tmp_path), *TINY_RUN]) == 0
    frames = __import__("numpy").load(out)
    assert frames.shape == (2, 32, 32, 3)
    manifest = _manifest(out)
    defaults = get_spec(name).default_models
    assert {option: manifest["models"][option] for option in defaults} == defaults
    for option, model_id in defaults.items():  # each read from its repository's snapshot in the cache
        assert manifest["model_paths"][option].startswith(str(hub_cache.repo_folder(use_cache, model_id)))


def test_lightning_reads_the_4_step_file_and_its_default_architecture_is_the_full_size_one(use_cache, tmp_path, capsys):
    out = tmp_path / "lightning.npy"
    # without the tiny architecture: diffusers' MotionAdapter() shape, which the tiny 4-step file does not fit
    assert main(["generate", "--backbone", "animatediff-lightning", "--out", str(out), *TINY_RUN]) == 2
    err = capsys.readouterr().err
    assert "animatediff_lightning_4step_diffusers.safetensors" in err and str(hub_cache.repo_folder(use_cache, LIGHTNING)) in err
    assert "MotionAdapter" in err and "Traceback" not in err
    assert not out.exists()


def test_animatelcm_loads_its_lora_from_the_adapter_repository(use_cache, tmp_path):
    out = tmp_path / "lcm.npy"
    assert main(["generate", "--backbone", "animatelcm", "--out", str(out), *TINY_RUN]) == 0
    manifest = _manifest(out)
    assert manifest["models"]["lcm_lora"] == ANIMATELCM
    assert manifest["model_paths"]["lcm_lora"].startswith(str(hub_cache.repo_folder(use_cache, ANIMATELCM)))


def test_videocrafter2_defaults_load_the_safetensors_revisions_without_allow_pickle(use_cache):
    bb = ivmixed.load("videocrafter2", device="cpu")
    assert bb.describe()["model_revisions"] == {"components": "refs/pr/46", "image_model": "refs/pr/4"}
    commits = {loc.option: Path(loc.path).name for loc in bb.locations.values()}
    assert commits["components"] == hub_cache.commit_of("cerspense/zeroscope_v2_576w", "refs/pr/46")
    assert commits["image_model"] == hub_cache.commit_of("SG161222/Realistic_Vision_V6.0_B1_noVAE", "refs/pr/4")


def test_list_finds_the_videocrafter2_defaults_at_the_revisions_they_load_from(tmp_path, layouts, monkeypatch):
    # was: `ivmixed list` looked on main only, so a cache holding just the safetensors revisions said "not found"
    from huggingface_hub import constants

    from ivmixed.registry import get_spec

    repos = ["adamdad/videocrafterv2_diffusers", "cerspense/zeroscope_v2_576w", "SG161222/Realistic_Vision_V6.0_B1_noVAE"]
    only = {repo: {**layouts["repositories"][repo]} for repo in repos}
    for repo in repos[1:]:  # what loading the defaults downloads: the pull-request revisions, not main
        only[repo]["revisions"] = {k: v for k, v in only[repo]["revisions"].items() if k != "main"}
    cache = tmp_path / "hub"
    hub_cache.build_cache(cache, {"repositories": only}, repos)
    assert not (hub_cache.repo_folder(cache, repos[1]) / "refs" / "main").exists()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    availability = get_spec("videocrafter2").availability()
    assert availability["weights_local"] == {"model": True, "components": True, "image_model": True}


def test_videocrafter2_main_revision_is_refused_naming_the_pickles_the_risk_and_the_flags(use_cache, tmp_path, capsys):
    out = tmp_path / "vc2.npy"
    argv = ["generate", "--backbone", "videocrafter2", "-o", "image_model_revision=main", "--out", str(out), *TINY_RUN]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unet/diffusion_pytorch_model.bin" in err and "text_encoder/pytorch_model.bin" in err
    assert "can run any code" in err
    assert "--allow-pickle" in err and "-o image_model_revision=REVISION" in err
    assert not out.exists() and not Path(str(out) + ".json").exists()


def test_pickle_only_refusal_comes_before_any_weight_loads(use_cache, monkeypatch):
    import diffusers

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded before the pickle check")

    for cls in ("UNet2DConditionModel", "AutoencoderKL"):
        monkeypatch.setattr(getattr(diffusers, cls), "from_pretrained", classmethod(refuse))
    with pytest.raises(UnsafeWeights, match="components"):
        ivmixed.load("videocrafter2", device="cpu", components_revision="main")


def test_allow_pickle_loads_the_main_branch_pickles(use_cache, tmp_path):
    out = tmp_path / "vc2.npy"
    argv = ["generate", "--backbone", "videocrafter2", "--allow-pickle", "-o", "image_model_revision=main", "--out", str(out), *TINY_RUN]
    assert main(argv) == 0
    assert _manifest(out)["model_revisions"] == {
        "components": "refs/pr/46",
        "image_model": "main",
    }


# -- variants: each model on its own, never one its repository lacks -------------------------------------------------


class _Planned(Exception):
    pass


def _plan(name: str, dtype: torch.dtype, monkeypatch, **options) -> dict:
    """The variants the backbone chooses for its default ids under ``dtype`` (fp16 stands for a CUDA run), stopping before any weight loads."""
    from ivmixed.backbones.diffusers import template

    monkeypatch.setattr(template, "resolve_dtype", lambda requested, device: dtype)
    real = template.DiffusersBackbone.plan

    def stop(self, *args):
        raise _Planned(real(self, *args))

    monkeypatch.setattr(template.DiffusersBackbone, "plan", stop)
    with pytest.raises(_Planned) as info:
        ivmixed.load(name, device="cpu", **options)
    return info.value.args[0]


def test_fp16_by_default_only_where_the_repository_publishes_it(use_cache, monkeypatch, tmp_path):
    from ivmixed.testing import tiny

    # Realistic Vision V5.1 has no fp16 files, its motion adapter and SD1.5 have them: chosen apart
    assert _plan("animatediff", torch.float16, monkeypatch) == {"model": None, "motion_adapter": "fp16", "image_model": "fp16"}
    assert _plan("modelscope", torch.float16, monkeypatch) == {"model": "fp16", "image_model": "fp16"}
    assert _plan("videocrafter2", torch.float16, monkeypatch) == {"model": None, "components": None, "image_model": None}
    # SDXL base and its adapter publish fp16 files for everything; epiCRealism none, AnimateLCM's adapter has them
    if "animatediff-sdxl" in BACKBONES:
        assert _plan("animatediff-sdxl", torch.float16, monkeypatch) == {"model": "fp16", "motion_adapter": "fp16", "image_model": "fp16"}
    if "animatelcm" in BACKBONES:
        assert _plan("animatelcm", torch.float16, monkeypatch) == {"model": None, "motion_adapter": "fp16", "image_model": "fp16"}
    lightning = {}
    if "animatediff-lightning" in BACKBONES:
        lightning = {"motion_module_config": str(tiny.save_motion_adapter_config(tmp_path / "lightning-architecture"))}
        # the Lightning file is one fp16 state dict, outside the variant plan; its base is epiCRealism
        assert _plan("animatediff-lightning", torch.float16, monkeypatch, **lightning) == {"model": None, "image_model": "fp16"}
    for name in BACKBONES:  # fp32 (the CPU default) loads the plain files
        options = lightning if name == "animatediff-lightning" else {}
        assert set(_plan(name, torch.float32, monkeypatch, **options).values()) == {None}


def test_a_variant_the_repository_lacks_is_refused_before_loading(use_cache, tmp_path, capsys):
    out = tmp_path / "ad.npy"
    assert main(["generate", "--backbone", "animatediff", "-o", "variant=fp16", "--out", str(out), *TINY_RUN]) == 2
    err = capsys.readouterr().err
    assert "-o variant=fp16" in err and "SG161222/Realistic_Vision_V5.1_noVAE" in err and "publishes no fp16 weights" in err
    assert not out.exists()


def test_the_adapter_variant_is_set_on_its_own(use_cache, tmp_path):
    out = tmp_path / "ad.npy"
    argv = ["generate", "--backbone", "animatediff", "-o", "motion_adapter_variant=fp16", "--out", str(out), *TINY_RUN]
    assert main(argv) == 0
    manifest = _manifest(out)
    assert manifest["weight_variants"] == {"model": None, "motion_adapter": "fp16", "image_model": None}


def test_revision_options_per_model(use_cache):
    with pytest.raises(MissingWeights) as info:
        ivmixed.load("modelscope", device="cpu", image_model_revision="refs/pr/99")
    message = str(info.value)
    assert "hf download stable-diffusion-v1-5/stable-diffusion-v1-5 --revision refs/pr/99" in message
    assert "ali-vilab/text-to-video-ms-1.7b" not in message  # the video model is found at main


# -- an unreachable hub: the cache first, then a fast clear error -------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name", ["modelscope", "videocrafter2"])
def test_unreachable_hub_fails_fast_with_the_missing_weights_error(name, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "empty-hf-home"), HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}", HF_HUB_DISABLE_TELEMETRY="1")
    proc = subprocess.run(
        [sys.executable, "-m", "ivmixed", "generate", "--backbone", name, "--out", str(tmp_path / "x.npy"), *TINY_RUN],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "cannot be reached" in proc.stderr and "connection was refused" in proc.stderr
    assert "HF_HUB_OFFLINE=1" in proc.stderr
    for model_id in get_spec(name).default_models.values():
        assert f"hf download {model_id}" in proc.stderr
    if name == "videocrafter2":
        assert "hf download cerspense/zeroscope_v2_576w --revision refs/pr/46" in proc.stderr
    assert "Errno" not in proc.stderr and "Traceback" not in proc.stderr
    assert "Retrying" not in proc.stderr  # no download retries before the error
    assert not (tmp_path / "x.npy").exists()
