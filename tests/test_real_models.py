"""The real architectures of the default models, built on the ``meta`` device: sizes, shapes and pairings, no memory.

The recorded configurations (:mod:`ivmixed.testing.real_models`) are checked against the published weight
sizes (``tests/data/hub_layouts.json``: 4 bytes a value in fp32 files, 2 in fp16 ones), against each other
(the widths that the backbones pair), and by one guided evaluation through ivmixed's own score adapters.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from ivmixed.registry import get_spec
from ivmixed.testing import real_models
from ivmixed.testing.real_models import MODELS, latent_example, parameter_count

@functools.cache
def build(name: str):
    """Each network built once on ``meta`` for the whole module (building is the slow part)."""
    return real_models.build(name)


LAYOUTS = json.loads((Path(__file__).parent / "data" / "hub_layouts.json").read_text())

#: published sizes have three significant figures (≤ 0.1 % rounding); file headers and pickle framing add
#: well under 0.1 % more; 0.5 % still tells apart any change of a width or a depth (one SD1.5 UNet block
#: layer is > 1 % of the UNet)
SIZE_TOLERANCE = 0.005


def _published_sizes(repo_id: str, weights: str) -> list[tuple[str, int, int]]:
    """``(file, bytes, bytes per value)`` of the published weight files of one network (plain and fp16 variants)."""
    stem, dot, suffix = weights.rpartition(".")
    out = []
    for revision in LAYOUTS["repositories"][repo_id]["revisions"].values():
        for entry in revision["files"]:
            if "size_bytes_approx" not in entry:
                continue
            if entry["path"] == weights:
                out.append((entry["path"], entry["size_bytes_approx"], 2 if entry.get("dtype") == "fp16" else 4))
            elif entry["path"] == f"{stem}.fp16.{suffix}":
                out.append((entry["path"], entry["size_bytes_approx"], 2))
    return out


@pytest.mark.parametrize("name", list(MODELS))
def test_builds_on_meta_without_memory(name):
    module = build(name)
    tensors = list(module.parameters()) + list(module.buffers())
    assert tensors and all(t.device.type == "meta" for t in tensors)


@pytest.mark.parametrize("name", [n for n, m in MODELS.items() if m.repositories])
def test_parameter_count_matches_the_published_weight_sizes(name):
    count = parameter_count(build(name))
    checked = []
    for repo_id, weights in MODELS[name].repositories.items():
        for path, size, per_value in dict.fromkeys(_published_sizes(repo_id, weights)):
            expected = count * per_value
            assert abs(expected - size) <= SIZE_TOLERANCE * size, f"{repo_id}/{path}: {size} bytes published, {expected} from the config"
            checked.append(path)
    if name in {"modelscope_unet", "videocrafter2_unet", "sd15_unet", "sd_vae", "clip_l_text", "openclip_h_text",
                "sdxl_unet", "motion_adapter_sdxl", "sdxl_vae", "openclip_bigg_text", "motion_adapter_v2"}:
        assert checked, f"no published size checked for {name}"


def test_known_parameter_counts():
    # the figures the benchmarks report, pinned so that a change of the recorded configs is seen
    assert parameter_count(build("sd15_unet")) == 859_520_964
    assert parameter_count(build("modelscope_unet")) == 1_411_233_860
    # VideoCrafter2 = ModelScope's UNet + the fps MLP Linear(320, 1280) -> Linear(1280, 1280)
    assert parameter_count(build("videocrafter2_unet")) - parameter_count(build("modelscope_unet")) == 320 * 1280 + 1280 + 1280 * 1280 + 1280


def test_known_parameter_counts_of_the_sdxl_and_few_step_families():
    # 2,567,463,684: the widely published SDXL base UNet figure, from the standard config built here
    assert parameter_count(build("sdxl_unet")) == 2_567_463_684
    assert parameter_count(build("motion_adapter_sdxl")) == 237_137_600
    assert parameter_count(build("openclip_bigg_text")) == 694_659_840
    assert parameter_count(build("clip_l_text")) == 123_060_480
    assert parameter_count(build("motion_adapter_v2")) == 453_813_440
    # the SDXL VAE is the SD VAE architecture with another scaling factor
    assert parameter_count(build("sdxl_vae")) == parameter_count(build("sd_vae")) == 83_653_863
    # a motion UNet is its image UNet plus every adapter value, nothing else
    for motion, unet, adapter in (
        ("animatediff_sdxl_motion_unet", "sdxl_unet", "motion_adapter_sdxl"),
        ("fewstep_motion_unet", "sd15_unet", "motion_adapter_v2"),
        ("animatediff_motion_unet", "sd15_unet", "motion_adapter_v1_5_3"),
    ):
        assert parameter_count(build(motion)) == parameter_count(build(unet)) + parameter_count(build(adapter))
    assert parameter_count(build("animatediff_sdxl_motion_unet")) == 2_804_601_284


def test_recorded_configs_agree_with_the_recorded_repository_values():
    repos = LAYOUTS["repositories"]
    adapter = repos["guoyww/animatediff-motion-adapter-v1-5-3"]["config"]
    assert {k: MODELS["motion_adapter_v1_5_3"].config[k] for k in adapter} == adapter
    vc2 = repos["adamdad/videocrafterv2_diffusers"]["config"]
    assert MODELS["videocrafter2_unet"].config["fps_cond"] is vc2["fps_cond"] is True
    assert MODELS["videocrafter2_unet"].config["cross_attention_dim"] == vc2["cross_attention_dim"]
    for name, model in MODELS.items():
        for option in model.used_by:
            backbone, _, role = option.partition(":")
            model_id = get_spec(backbone).default_models[role]
            assert f"{backbone}:{role}" in repos[model_id]["default_of"], (name, option)


def test_the_pairings_fit():
    cfg = {name: model.config for name, model in MODELS.items()}
    # text widths: SD1.5 UNets read CLIP-L embeddings; ModelScope and VideoCrafter2 read OpenCLIP-H ones
    assert cfg["sd15_unet"]["cross_attention_dim"] == cfg["clip_l_text"]["hidden_size"] == 768
    assert cfg["modelscope_unet"]["cross_attention_dim"] == cfg["openclip_h_text"]["hidden_size"] == 1024
    assert cfg["videocrafter2_unet"]["cross_attention_dim"] == 1024
    # one latent space: 4 channels, VAE factor 8
    for unet in ("sd15_unet", "modelscope_unet", "videocrafter2_unet"):
        assert cfg[unet]["in_channels"] == cfg[unet]["out_channels"] == cfg["sd_vae"]["latent_channels"] == 4
    assert 2 ** (len(cfg["sd_vae"]["block_out_channels"]) - 1) == 8
    # native sizes: SD1.5 at 512² (64² latents), ModelScope at 256² (32² latents)
    assert cfg["sd15_unet"]["sample_size"] * 8 == 512 and cfg["modelscope_unet"]["sample_size"] * 8 == 256
    # the motion adapter fits the SD1.5 UNet's blocks, and its positional slots bound AnimateDiff's frames
    assert cfg["motion_adapter_v1_5_3"]["block_out_channels"] == cfg["sd15_unet"]["block_out_channels"]
    motion = build("animatediff_motion_unet")
    assert motion.config.motion_max_seq_length == 32 and motion.config.use_motion_mid_block is False


def test_the_sdxl_and_few_step_pairings_fit():
    cfg = {name: model.config for name, model in MODELS.items()}
    sdxl = cfg["sdxl_unet"]
    # the UNet reads both encoders' hidden states side by side: 768 + 1280
    assert sdxl["cross_attention_dim"] == cfg["clip_l_text"]["hidden_size"] + cfg["openclip_bigg_text"]["hidden_size"] == 2048
    # its text_time embedding: 6 time ids × 256 + the pooled (projected) embedding of the second encoder
    assert sdxl["projection_class_embeddings_input_dim"] == 6 * sdxl["addition_time_embed_dim"] + cfg["openclip_bigg_text"]["projection_dim"]
    # one latent space with SD1.5's shape (4 channels, factor 8), another scaling factor; native 1024² (128² latents)
    assert sdxl["in_channels"] == sdxl["out_channels"] == cfg["sdxl_vae"]["latent_channels"] == 4
    assert cfg["sdxl_vae"]["scaling_factor"] == 0.13025 != cfg["sd_vae"]["scaling_factor"]
    assert sdxl["sample_size"] * 8 == 1024
    # each adapter fits its UNet's blocks
    assert cfg["motion_adapter_sdxl"]["block_out_channels"] == sdxl["block_out_channels"] == [320, 640, 1280]
    assert cfg["motion_adapter_v2"]["block_out_channels"] == cfg["sd15_unet"]["block_out_channels"]
    assert build("animatediff_sdxl_motion_unet").config.use_motion_mid_block is False
    assert build("fewstep_motion_unet").config.use_motion_mid_block is True
    repos = LAYOUTS["repositories"]
    for adapter, repo_id in (("motion_adapter_sdxl", "guoyww/animatediff-motion-adapter-sdxl-beta"), ("motion_adapter_v2", "wangfuyun/AnimateLCM")):
        recorded = repos[repo_id]["config"]
        assert {k: cfg[adapter][k] for k in recorded} == recorded


@pytest.mark.parametrize(
    "name",
    ["sd15_unet", "animatediff_motion_unet", "modelscope_unet", "videocrafter2_unet", "sdxl_unet", "animatediff_sdxl_motion_unet", "fewstep_motion_unet"],
)
def test_one_guided_evaluation_through_the_score_adapters_keeps_the_latent_shape(name):
    inputs = latent_example(name, frames=2, size=16)
    eps = real_models.evaluate(name, build(name), inputs)
    assert eps.shape == inputs["x"].shape == (2, 4, 2, 16, 16)


def test_text_encoders_and_vae_shapes():
    for name, width in (("clip_l_text", 768), ("openclip_h_text", 1024), ("openclip_bigg_text", 1280)):
        out = real_models.evaluate(name, build(name), latent_example(name))
        assert out.shape == (2, 77, width)
    for vae in ("sd_vae", "sdxl_vae"):
        decoded = real_models.evaluate(vae, build(vae), latent_example(vae, frames=2, size=16))
        assert decoded.shape == (4, 3, 128, 128)


def test_backbone_model_lists_name_recorded_models():
    assert set(real_models.BACKBONE_MODELS) == {"animatediff", "modelscope", "videocrafter2"}
    for backbone, names in real_models.BACKBONE_MODELS.items():
        assert set(names) <= set(MODELS)
        used = {option.partition(":")[0] for name in names for option in MODELS[name].used_by}
        assert backbone in used
    assert set(real_models.FAMILY_MODELS) == {"sdxl", "fewstep"}
    for names in real_models.FAMILY_MODELS.values():
        assert set(names) <= set(MODELS)


def test_gpu_benchmark_tiny_json_has_every_field(capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
    spec = importlib.util.spec_from_file_location("gpu_benchmark", path)
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    assert gpu.main(["--tiny", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["device"] == "cpu" and report["dtype"] == "fp32" and report["weights"] == "tiny random"
    assert [run["backbone"] for run in report["runs"]] == ["animatediff", "modelscope", "videocrafter2"]
    for run in report["runs"]:
        for kind in ("origin", "iv_iv", "stock_origin"):
            assert run[kind]["wall_s"] > 0 and run[kind]["peak_memory_bytes"] is None  # no CUDA memory on the CPU
        assert run["origin_over_stock"] == pytest.approx(run["origin"]["wall_s"] / run["stock_origin"]["wall_s"])
        assert run["iv_iv_over_origin"] == pytest.approx(run["iv_iv"]["wall_s"] / run["origin"]["wall_s"])
        assert (run["frames"], run["height"], run["width"], run["steps"]) == gpu.TINY[run["backbone"]]
    assert gpu.PAPER == {"animatediff": (16, 512, 512, 50), "modelscope": (16, 256, 256, 50), "videocrafter2": (16, 320, 512, 50)}


def _benchmark(name: str):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_full_size_benchmark_skips_what_does_not_fit_with_the_reason(capsys, monkeypatch):
    full_size = _benchmark("full_size")
    monkeypatch.setattr(full_size.subprocess, "run", lambda *a, **k: pytest.fail("a network was built although it does not fit"))
    assert full_size.main(["--models", "animatediff_sdxl_motion_unet,sdxl_unet", "--json", "--memory-limit-gb", "11"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    motion, unet = report["models"]
    # the motion UNet is assembled from the image UNet and the adapter: two fp32 copies of 2.80 B values + margin
    assert motion["parameters"] == 2_804_601_284
    assert motion["estimated_peak_bytes"] == 2 * 4 * 2_804_601_284 + full_size.MARGIN_BYTES > 24 * 2**30 - 2e9
    assert "built twice" in motion["skipped"] and "over the 11.0 GB limit (--memory-limit-gb)" in motion["skipped"]
    # the SDXL UNet alone needs 10.3 GB of weights + margin: over 11 GB as well, and its published sizes are reported
    assert unet["estimated_peak_bytes"] == 4 * 2_567_463_684 + full_size.MARGIN_BYTES
    assert {row["file"] for row in unet["published_weights"]} == {
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
    }
    assert "skipped animatediff_sdxl_motion_unet" in captured.err
    assert report["settings"]["memory_limit_from"] == "--memory-limit-gb"
