"""Bad requests to the diffusers backbones fail early, with a message that says what is wrong and how to fix it."""

from __future__ import annotations

import pytest
import torch

import ivmixed
from ivmixed.backbones.diffusers import MissingWeights, parse_loras, resolve_device, resolve_dtype
from ivmixed.backbones.base import IncompatibleModels
from ivmixed.cli import main

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache and an offline hub, whatever this machine has downloaded."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture
def nothing_heavy_loads(monkeypatch):
    """Fail the test if any weights start loading."""
    import diffusers

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded before the request was checked")

    for cls in ("AnimateDiffPipeline", "TextToVideoSDPipeline", "MotionAdapter", "UNet2DConditionModel"):
        monkeypatch.setattr(getattr(diffusers, cls), "from_pretrained", classmethod(refuse))


# -- missing weights --------------------------------------------------------------------------------------

DEFAULT_IDS = {
    "animatediff": [
        "SG161222/Realistic_Vision_V5.1_noVAE",
        "guoyww/animatediff-motion-adapter-v1-5-3",
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
    ],
    "modelscope": ["ali-vilab/text-to-video-ms-1.7b", "stable-diffusion-v1-5/stable-diffusion-v1-5"],
}


@pytest.mark.parametrize("name", ["animatediff", "modelscope"])
def test_missing_default_weights_offline_name_every_model_and_how_to_provide_it(name, empty_hub_cache, nothing_heavy_loads):
    with pytest.raises(MissingWeights) as info:
        ivmixed.load(name, device="cpu")
    message = str(info.value)
    for model_id in DEFAULT_IDS[name]:
        assert model_id in message
        assert f"hf download {model_id}" in message
    assert "--model PATH" in message and "--image-model PATH" in message
    assert "HF_HOME" in message and str(empty_hub_cache) in message
    assert "offline" in message
    assert len(info.value.missing) == len(DEFAULT_IDS[name])


def test_missing_weights_list_local_paths_and_hub_ids_together(tiny_models, empty_hub_cache, nothing_heavy_loads):
    with pytest.raises(MissingWeights) as info:
        ivmixed.load("animatediff", model="/no/such/folder", image_model=str(tiny_models.image_unet), device="cpu")
    message = str(info.value)
    assert "no such file or folder: /no/such/folder" in message
    assert "guoyww/animatediff-motion-adapter-v1-5-3" in message  # the default adapter is missing too
    assert str(tiny_models.image_unet) not in message  # that one was found


def test_cli_reports_missing_weights_with_status_2(empty_hub_cache, capsys):
    status = main(["generate", "--backbone", "modelscope", "--steps", "2", "--out", "x.gif"])
    assert status == 2
    err = capsys.readouterr().err
    assert "ali-vilab/text-to-video-ms-1.7b" in err and "stable-diffusion-v1-5/stable-diffusion-v1-5" in err


def test_a_cached_hub_id_is_found_without_network(tiny_models, empty_hub_cache):
    """A snapshot in the Hugging Face cache (its layout: models--owner--name/snapshots/REV + refs/main) is used as is."""
    import shutil

    repo = empty_hub_cache / "models--ivmixed-tests--tiny-t2v"
    shutil.copytree(tiny_models.modelscope, repo / "snapshots" / "0123abc")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    bb = ivmixed.load("modelscope", model="ivmixed-tests/tiny-t2v", image_model=str(tiny_models.sd15_ms), device="cpu")
    assert bb.describe()["models"]["model"] == "ivmixed-tests/tiny-t2v"
    assert bb.describe()["model_paths"]["model"] == str(repo / "snapshots" / "0123abc")


def test_a_folder_of_the_wrong_layout_is_named(tiny_models, nothing_heavy_loads):
    with pytest.raises(MissingWeights, match=r"not a diffusers video model"):
        ivmixed.load("modelscope", model=str(tiny_models.motion_adapter), image_model=str(tiny_models.sd15_ms), device="cpu")


def test_a_missing_lora_file_is_reported_before_loading(tiny_animatediff, nothing_heavy_loads):
    with pytest.raises(FileNotFoundError, match="--image-lora /nope/style.safetensors: no such file"):
        ivmixed.load("animatediff", **tiny_animatediff, image_loras=["/nope/style.safetensors:0.8"])


def test_lora_specs_read_path_and_scale(tmp_path):
    lora = tmp_path / "style.safetensors"
    lora.write_bytes(b"")
    pickled = tmp_path / "old.ckpt"
    pickled.write_bytes(b"")
    assert [(s.path, s.scale) for s in parse_loras([str(lora), f"{lora}:0.5", (lora, 2)])] == [(lora, 1.0), (lora, 0.5), (lora, 2.0)]
    with pytest.raises(ValueError, match="--allow-pickle"):
        parse_loras([str(pickled)])
    assert parse_loras([str(pickled)], allow_pickle=True)[0].path == pickled


# -- sizes, device, dtype --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["animatediff", "modelscope"])
def test_resolution_not_a_multiple_of_8_is_refused(name, request, capsys):
    options = request.getfixturevalue(f"tiny_{name}")
    with pytest.raises(ValueError, match=rf"--height 36 is not a multiple of 8, which backbone '{name}' needs .*; try 32"):
        ivmixed.load(name, **options).generate("a horse", height=36, width=32, frames=2, steps=2, progress=False)
    # the CLI refuses before loading anything (its message names the backbone and the VAE factor)
    assert main(["generate", "--backbone", name, "--width", "44", "--out", "x.gif"]) == 2
    assert "--width 44 is not a multiple of 8" in capsys.readouterr().err


def test_fp16_on_the_cpu_is_refused_with_the_alternatives():
    with pytest.raises(ValueError, match="fp16 needs a CUDA device; on the CPU use fp32 .* or bf16"):
        resolve_dtype("fp16", torch.device("cpu"))
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype(None, torch.device("cuda")) == torch.float16
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="expected fp32, fp16 or bf16"):
        resolve_dtype("int8", torch.device("cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused(tiny_animatediff):
    assert resolve_device(None) == torch.device("cpu")
    with pytest.raises(ValueError, match="sees no CUDA device here; use --device cpu"):
        ivmixed.load("animatediff", **{**tiny_animatediff, "device": "cuda"})


def test_bf16_runs_on_the_cpu(tiny_modelscope):
    bb = ivmixed.load("modelscope", **tiny_modelscope, dtype="bf16")
    video = bb.generate("a horse", program="IV-IV", frames=2, height=32, width=32, steps=2, progress=False)
    assert video.latents.dtype == torch.bfloat16 and video.frames.dtype.name == "float32"
    assert bb.describe()["dtype"] == "bf16"


# -- pairs that cannot be mixed ------------------------------------------------------------------------------


def test_image_model_with_other_latent_channels_is_incompatible(tiny_models, tiny_animatediff, nothing_heavy_loads):
    with pytest.raises(IncompatibleModels, match="works on 8-channel latents but the video model .* on 4"):
        ivmixed.load("animatediff", **{**tiny_animatediff, "image_model": str(tiny_models.image_unet_8ch)})


@pytest.mark.parametrize("name", ["animatediff", "modelscope"])
def test_image_model_with_another_noise_table_is_incompatible(name, tiny_models, request, nothing_heavy_loads):
    options = {**request.getfixturevalue(f"tiny_{name}"), "image_model": str(tiny_models.sd15_other_betas)}
    with pytest.raises(IncompatibleModels, match=r"different noise tables ᾱ_t \(largest gap"):
        ivmixed.load(name, **options)


def test_image_model_expecting_other_text_embeddings_is_incompatible(tiny_models, tiny_animatediff, nothing_heavy_loads):
    with pytest.raises(IncompatibleModels, match="expects 24-wide text embeddings but gets 32-wide ones"):
        ivmixed.load("animatediff", **{**tiny_animatediff, "image_model": str(tiny_models.image_unet_wide)})


# -- unknown names and options ------------------------------------------------------------------------------------


def test_unknown_backbone_lists_the_diffusers_backbones(capsys):
    with pytest.raises(ivmixed.UnknownBackbone, match=r"known backbones: .*animatediff.*modelscope"):
        ivmixed.load("animatedif")
    assert main(["generate", "--backbone", "animatedif", "--out", "x.gif"]) == 2
    assert "unknown backbone 'animatedif'" in capsys.readouterr().err


def test_an_option_of_the_other_backbone_is_refused(tiny_animatediff):
    with pytest.raises(ValueError, match="does not take option.* image_latent_size"):
        ivmixed.load("animatediff", **tiny_animatediff, image_latent_size=64)
