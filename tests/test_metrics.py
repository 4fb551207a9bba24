"""Frame metrics: CLIP text–video score and frame consistency on tiny random CLIP/ViT folders, motion, the metric registry."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ivmixed.metrics import discover_metrics, get_metric_spec, load_metric, register_metric, unregister_metric
from ivmixed.metrics.motion import frame_difference

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

SIZE = 32  # the tiny towers' input side: frames of this size are fed to the model unresized


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    from ivmixed.testing.tiny_vision import tiny_clip

    return tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory):
    from ivmixed.testing.tiny_vision import tiny_vit

    return tiny_vit(tmp_path_factory.mktemp("vit") / "tiny-dino")


def _frames(n=4, h=SIZE, w=SIZE, seed=0):
    return np.random.default_rng(seed).random((n, h, w, 3)).astype(np.float32)


# -- clip_score ----------------------------------------------------------------------------------------


def test_clip_score_equals_transformers_own_clip_similarity(tiny_clip_dir, torch_single_thread):
    """On frames already at the model's size, the score is the mean cosine of transformers' own CLIP features."""
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    frames = _frames()
    prompt = "a cat and a dog"
    score = load_metric("clip_score", model=str(tiny_clip_dir), device="cpu")(frames, prompt)

    model = CLIPModel.from_pretrained(tiny_clip_dir, local_files_only=True).eval()
    processor = CLIPImageProcessor.from_pretrained(tiny_clip_dir, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(tiny_clip_dir, local_files_only=True)
    pixels = processor(images=list(frames), do_resize=False, do_center_crop=False, do_rescale=False, return_tensors="pt").pixel_values
    with torch.no_grad():
        image = model.vision_model(pixel_values=pixels).pooler_output
        image = model.visual_projection(image)
        text = model.text_projection(model.text_model(**tokenizer([prompt], return_tensors="pt")).pooler_output)
    image = image / image.norm(dim=-1, keepdim=True)
    text = text / text.norm(dim=-1, keepdim=True)
    expected = float((image @ text.T).mean())
    assert score == pytest.approx(expected, abs=1e-5)
    assert -1.0 <= score <= 1.0


def test_clip_score_is_the_mean_of_the_per_frame_scores(tiny_clip_dir, torch_single_thread):
    metric = load_metric("clip_score", model=str(tiny_clip_dir), device="cpu")
    frames = _frames(n=5, h=40, w=56, seed=1)  # resized and centre-cropped on the way in
    per_frame = [metric(frames[i : i + 1], "a red car") for i in range(len(frames))]
    assert metric(frames, "a red car") == pytest.approx(np.mean(per_frame), abs=1e-5)
    assert metric(frames[::-1].copy(), "a red car") == pytest.approx(metric(frames, "a red car"), abs=1e-5)
    assert len(set(np.round(per_frame, 6))) > 1  # the frames do score differently: the mean is not one frame's


def test_clip_score_depends_on_the_prompt(tiny_clip_dir, torch_single_thread):
    metric = load_metric("clip_score", model=str(tiny_clip_dir), device="cpu")
    frames = _frames(seed=2)
    assert metric(frames, "a red car") != pytest.approx(metric(frames, "the horse and the sheep"), abs=1e-4)


def test_clip_score_refuses_an_image_only_model_before_loading_weights(tiny_vit_dir, tmp_path):
    import shutil

    folder = tmp_path / "no-weights"
    shutil.copytree(tiny_vit_dir, folder)
    (folder / "model.safetensors").unlink()  # the refusal must come from the config alone
    with pytest.raises(ValueError, match="clip_score needs a CLIP model .* is a vit model"):
        load_metric("clip_score", model=str(folder))


# -- frame_consistency ---------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["clip", "vit"])
def test_frame_consistency_of_a_still_video_is_one(which, tiny_clip_dir, tiny_vit_dir, torch_single_thread):
    folder = tiny_clip_dir if which == "clip" else tiny_vit_dir
    metric = load_metric("frame_consistency", model=str(folder), device="cpu")
    still = np.repeat(_frames(n=1, seed=3), 6, axis=0)
    assert metric(still) == pytest.approx(1.0, abs=1e-5)
    moving = _frames(n=6, seed=4)
    assert metric(moving) < 1.0 - 1e-4


@pytest.mark.parametrize("which", ["clip", "vit"])
def test_frame_consistency_averages_consecutive_pairs_only(which, tiny_clip_dir, tiny_vit_dir, torch_single_thread):
    """[A, A, B, B] has pairs (A,A), (A,B), (B,B): consistency (2 + cos(A, B)) / 3; [A, B, A, B] has three (A,B) pairs."""
    from ivmixed.metrics.embedding import load_encoder

    folder = str(tiny_clip_dir if which == "clip" else tiny_vit_dir)
    metric = load_metric("frame_consistency", model=folder, device="cpu")
    a, b = _frames(n=2, seed=5)
    emb = load_encoder(folder, "cpu", None, False).images(np.stack([a, b]))
    cos_ab = float(emb[0] @ emb[1])
    assert cos_ab < 0.9999
    assert metric(np.stack([a, a, b, b])) == pytest.approx((2 + cos_ab) / 3, abs=1e-5)
    assert metric(np.stack([a, b, a, b])) == pytest.approx(cos_ab, abs=1e-5)
    assert np.isnan(metric(np.stack([a])))  # one frame has no consecutive pair


def test_a_vit_folder_gives_the_cls_embedding(tiny_vit_dir, torch_single_thread):
    from transformers import ViTModel

    from ivmixed.metrics.embedding import load_encoder

    encoder = load_encoder(str(tiny_vit_dir), "cpu", None, False)
    frames = _frames(n=2, seed=6)
    model = ViTModel.from_pretrained(tiny_vit_dir, local_files_only=True).eval()
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    pixels = torch.from_numpy(((frames - mean) / std).astype(np.float32)).permute(0, 3, 1, 2)
    with torch.no_grad():
        cls = model(pixel_values=pixels).last_hidden_state[:, 0]
    expected = torch.nn.functional.normalize(cls, dim=-1)
    assert torch.allclose(encoder.images(frames), expected, atol=1e-5)
    assert encoder.describe()["embedding"] == "CLS token"


def test_pickled_weights_need_allow_pickle(tiny_vit_dir, tmp_path, torch_single_thread):
    import shutil

    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_vit_dir, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"no \.safetensors weights; pass allow_pickle=True"):
        load_metric("frame_consistency", model=str(folder), device="cpu")
    metric = load_metric("frame_consistency", model=str(folder), device="cpu", allow_pickle=True)
    assert metric(np.repeat(_frames(n=1), 3, axis=0)) == pytest.approx(1.0, abs=1e-5)


def test_a_model_that_is_not_local_is_refused_in_words_without_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match=r"neither a local folder nor in the Hugging Face cache .*huggingface-cli download someone/not-a-model"):
        load_metric("clip_score", model="someone/not-a-model")


def test_unknown_metric_option_is_refused_naming_the_accepted_ones():
    with pytest.raises(ValueError, match=r"metric 'motion' does not take option\(s\) model; it takes: none"):
        load_metric("motion", model="x")
    with pytest.raises(ValueError, match=r"does not take option\(s\) modle; it takes: model, device, dtype, allow_pickle"):
        load_metric("clip_score", modle="x")


# -- motion --------------------------------------------------------------------------------------------


def test_motion_of_a_frozen_clip_is_zero():
    still = np.repeat(_frames(n=1, seed=7), 5, axis=0)
    assert load_metric("motion")(still, "") == 0.0


@pytest.mark.parametrize("shift", [1, 2, 3])
def test_motion_of_a_moving_stripe_is_exact(shift):
    """A white stripe (8 wide) on black moving `shift` px per frame changes 2·shift of W columns per step: 2·shift / W."""
    frames_n, h, w = 5, 6, 40
    frames = np.zeros((frames_n, h, w, 3), dtype=np.float32)
    for f in range(frames_n):
        frames[f, :, 4 + shift * f : 12 + shift * f] = 1.0
    assert frame_difference(frames) == pytest.approx(2 * shift / w, abs=1e-12)


def test_motion_grows_with_the_shift():
    values = []
    for shift in range(0, 5):
        frames = np.zeros((4, 8, 64, 3), dtype=np.float32)
        for f in range(4):
            frames[f, :, 10 + shift * f : 30 + shift * f] = 1.0
        values.append(frame_difference(frames))
    assert values[0] == 0.0 and all(b > a for a, b in zip(values, values[1:]))


def test_motion_refuses_a_wrong_shape():
    with pytest.raises(ValueError, match=r"expected frames \(F, H, W, C\)"):
        frame_difference(np.zeros((4, 4, 3)))


# -- the registry --------------------------------------------------------------------------------------


@pytest.fixture
def metric_plugins(tmp_path, monkeypatch):
    """A folder on sys.path holding installed-looking distributions with ``ivmixed.metrics`` entry points."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def add(dist, entry_points, modules={}):
        info = tmp_path / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
        (info / "entry_points.txt").write_text(f"[ivmixed.metrics]\n{lines}\n")
        for name, source in modules.items():
            (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))

    return add


def test_builtins_come_from_ivmixed_through_the_entry_point_group():
    found, broken = discover_metrics()
    for name in ("clip_score", "frame_consistency", "motion"):
        assert found[name].distribution == "ivmixed"
    assert list(found) == sorted(found)


def test_discovery_does_not_import_torch_or_transformers():
    code = "import sys\nfrom ivmixed.metrics import discover_metrics\nfound, _ = discover_metrics()\nprint(len(found), 'torch' in sys.modules, 'transformers' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False False"), out


def test_a_broken_metric_plugin_breaks_neither_discovery_nor_list(metric_plugins, capsys):
    metric_plugins(
        "ivmixed-bad-metrics",
        {"crashes": "bad_metric_mod:SPEC", "exits": "exiting_metric_mod:SPEC", "sharpness": "good_metric_mod:SPEC"},
        {
            "bad_metric_mod": "import a_module_that_does_not_exist\n",
            "exiting_metric_mod": "import sys\nsys.exit(3)\n",
            "good_metric_mod": """
                from ivmixed.metrics import MetricSpec
                SPEC = MetricSpec(name="sharpness", factory="good_metric_impl:make", summary="a plugin metric", weight_file=None)
            """,
        },
    )
    found, broken = discover_metrics()
    assert {b.name: b.error for b in broken} == {
        "crashes": "ModuleNotFoundError: No module named 'a_module_that_does_not_exist'",
        "exits": "SystemExit: 3",
    }
    assert found["sharpness"].distribution == "ivmixed-bad-metrics" and "motion" in found
    from ivmixed.cli import main

    assert main(["list", "--metrics"]) == 0
    out = capsys.readouterr().out
    assert "crashes" in out and "BROKEN: ModuleNotFoundError" in out and "sharpness" in out and "motion" in out
    assert main(["list", "--metrics", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["exits"]["status"] == "broken" and rows["motion"]["can_run"] is True
    assert main(["list"]) == 0  # the backbone listing does not read the metric group at all
    assert "toy" in capsys.readouterr().out
    with pytest.raises(ImportError, match=r"metric 'crashes' \(from ivmixed-bad-metrics\) is broken: ModuleNotFoundError"):
        get_metric_spec("crashes")


def test_a_plugin_named_like_a_builtin_does_not_take_its_name(metric_plugins):
    metric_plugins(
        "ivmixed-other-motion",
        {"motion": "other_motion_mod:SPEC"},
        {"other_motion_mod": "from ivmixed.metrics import MetricSpec\nSPEC = MetricSpec(name='motion', factory=lambda: None, weight_file=None)\n"},
    )
    found, _ = discover_metrics()
    assert found["motion"].distribution == "ivmixed"
    assert found["ivmixed-other-motion:motion"].distribution == "ivmixed-other-motion"


def test_list_metrics_tells_where_each_comes_from_and_whether_it_runs(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    from ivmixed.cli import main

    assert main(["list", "--metrics"]) == 0
    out = capsys.readouterr().out
    assert "motion             from ivmixed  [can run here]" in out
    assert "clip_score         from ivmixed  [cannot run here with its defaults — weights not found locally: openai/clip-vit-large-patch14" in out


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown metric 'clipscore'; known metrics: clip_score, frame_consistency, motion"):
        get_metric_spec("clipscore")


def test_a_metric_registered_at_run_time_is_listed_and_loads():
    register_metric("brightness", lambda: (lambda frames, prompt: float(np.mean(frames))), summary="mean pixel value", weight_file=None)
    try:
        found, _ = discover_metrics()
        assert found["brightness"].distribution == "(registered at run time)"
        assert load_metric("brightness")(np.full((2, 4, 4, 3), 0.25, dtype=np.float32), "") == 0.25
    finally:
        unregister_metric("brightness")
    assert "brightness" not in discover_metrics()[0]
