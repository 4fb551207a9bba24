"""``ivmixed eval`` end to end on a toy batch (2 programs × 8 prompts × 2 seeds), checked against the manifests.

The batch is the README's "Evaluate" example, run in bash as written. The numbers of the report are recomputed
here from the files the batch wrote — every manifest read by glob, every video read with numpy — and from the
programs' own cost formula, never from the report itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ivmixed.cli import main

PROMPTS = [f"a {look} blob moving {way}" for look in ("bright", "dark") for way in ("right", "left", "up", "down")]
PROGRAMS = ("origin", "IV-IV")
SEEDS = 2
STEPS = 10  # as in the README's example
FRAMES = 8  # the toy world's clip length
TOY_METRICS = ("frame_error", "coherence", "video_error", "prompt_accuracy")
T975_DF7 = 2.3646242515927853  # Student t 97.5% quantile, 7 degrees of freedom (8 prompts)


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_evaluate_blocks() -> dict[str, list[str]]:
    """The code blocks of the README's "Evaluate" section, by language ("" for the sample output)."""
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Evaluate\n")
    section = text[start : text.index("\n## ", start + 1)]
    blocks: dict[str, list[str]] = {}
    for language, body in re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S):
        blocks.setdefault(language, []).append(body)
    return blocks


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory) -> tuple[Path, str]:
    """The README's toy commands run as written, in bash, in an empty folder: (the folder, what they printed)."""
    work = tmp_path_factory.mktemp("readme")
    commands = readme_evaluate_blocks()["bash"][0]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", commands], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return work, done.stdout


@pytest.fixture(scope="module")
def batch_dir(readme_run) -> Path:
    work, _ = readme_run
    assert (work / "prompts.txt").read_text(encoding="utf-8").splitlines() == PROMPTS
    return work / "runs" / "toy"


@pytest.fixture(scope="module")
def evaluated(batch_dir) -> tuple[str, dict]:
    """(the printed tables, eval.json) of `ivmixed eval DIR` with its defaults (motion measured on the frames)."""
    status, out, err = run_cli("eval", batch_dir, "--quiet")
    assert status == 0, err
    return out, json.loads((batch_dir / "eval" / "eval.json").read_text(encoding="utf-8"))


def manifests(batch_dir: Path) -> list[dict]:
    """Every manifest the batch wrote, found on disk (not through the index), with the video file beside it."""
    found = []
    for path in sorted(batch_dir.glob("*/*.npy.json")):
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["_video"] = path.with_name(path.name[: -len(".json")])
        found.append(manifest)
    return found


def motion_of(video: Path) -> float:
    frames = np.load(video).astype(np.float64)
    return float(np.mean([np.abs(frames[f + 1] - frames[f]).mean() for f in range(len(frames) - 1)]))


def values_by_video(batch_dir: Path) -> dict[tuple[str, str, int], dict]:
    """(program, item id, seed index) -> the metrics of the manifest, motion recomputed from the frames, cost, seconds, seed."""
    table = {}
    for m in manifests(batch_dir):
        values = dict(m["metrics"])
        values["motion"] = motion_of(m["_video"])
        values["seconds"] = m["timings"]["total_s"]
        values["idm"], values["vdm"] = m["cost"]["idm_image_evals"], m["cost"]["vdm_clip_evals"]
        values["seed"] = m["seed"]
        table[(m["program"], m["batch"]["item_id"], m["batch"]["seed_index"])] = values
    return table


def mean_and_halfwidth(per_prompt: list[float]) -> tuple[float, float]:
    n = len(per_prompt)
    mean = sum(per_prompt) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in per_prompt) / (n - 1))
    return mean, T975_DF7 * sd / math.sqrt(n)


# -- the command ------------------------------------------------------------------------------------


def test_the_readme_example_prints_what_the_readme_shows(readme_run):
    """The sample output in the README is the example's output (all but the seconds, which vary, and the columns cut)."""
    _, printed = readme_run
    (sample,) = readme_evaluate_blocks()[""]
    lines = printed.splitlines()
    at = 0
    for shown in sample.splitlines():
        if not shown.strip():
            continue
        cells = [c for c in re.split(r"\s{2,}", shown.replace("…", "").strip()) if c]
        found = next((i for i in range(at, len(lines)) if lines[i].startswith(cells[0])), None)  # in the order shown
        assert found is not None, shown
        match, at = lines[found], found + 1
        actual = [c for c in re.split(r"\s{2,}", match.strip()) if c][: len(cells)]
        if cells[0] in ("origin (baseline)", "IV-IV") and len(cells) > 5 and "±" in cells[-1]:
            actual[5] = cells[5]  # s/video: the seconds of sampling differ from run to run
        assert actual == cells, (shown, match)


def test_the_readme_python_example_runs(readme_run, capsys, monkeypatch):
    work, _ = readme_run
    monkeypatch.chdir(work)
    (code,) = readme_evaluate_blocks()["python"]
    exec(compile(code, "README: Evaluate", "exec"), {})
    assert "paired differences against origin on the same (prompt, seed):" in capsys.readouterr().out
    assert (work / "runs" / "toy" / "eval" / "quality_cost.png").stat().st_size > 0



def test_the_batch_holds_two_programs_eight_prompts_two_seeds(batch_dir):
    table = values_by_video(batch_dir)
    assert len(table) == len(PROGRAMS) * len(PROMPTS) * SEEDS == 32
    assert {k[0] for k in table} == set(PROGRAMS) and len({k[1] for k in table}) == 8 and {k[2] for k in table} == {0, 1}


def test_eval_prints_the_program_table_and_the_paired_table_against_origin(evaluated):
    out, report = evaluated
    lines = out.splitlines()
    header = lines[0].split()
    assert header[:2] == ["program", "videos"] and all(name in header for name in (*TOY_METRICS, "motion"))
    origin_row = next(line for line in lines if line.startswith("origin (baseline)"))
    assert origin_row.split()[2] == "16"  # videos
    assert "mean ± 95% interval over prompts (Student t)" in out
    at = lines.index("paired differences against origin on the same (prompt, seed):")
    paired_header, _, paired_row = lines[at + 1 : at + 4]
    assert paired_header.split()[:4] == ["program", "pairs", "cost", "×"] and "Δ frame_error" in paired_header
    cells = paired_row.split()
    assert cells[:2] == ["IV-IV", "16"]
    assert float(cells[2]) == pytest.approx(report["paired"][0]["cost_ratio"], abs=0.005)
    # every printed Δ is the JSON's mean with its bootstrap interval
    row = report["paired"][0]
    shown = paired_row.split("  ")
    for name in (*TOY_METRICS, "motion"):
        text = f"{row[name]:+.4f} [{row[name + '_low']:+.4f}, {row[name + '_high']:+.4f}]"
        assert any(text == cell.strip() for cell in shown), (name, text, paired_row)
    assert "Δ = program − origin, mean [95% bootstrap interval, 2000 resamples of the prompts]" in out
    assert report["baseline"] == "origin" and report["programs"] == list(PROGRAMS)


def test_eval_writes_json_markdown_and_a_real_quality_cost_plot(evaluated, batch_dir):
    from PIL import Image

    out_dir = batch_dir / "eval"
    assert sorted(p.name for p in out_dir.iterdir()) == ["eval.json", "eval.md", "quality_cost.png"]
    markdown = (out_dir / "eval.md").read_text(encoding="utf-8")
    assert markdown.startswith(f"# Evaluation of `{batch_dir}`")
    assert "| program | videos | model evals |" in markdown and "| IV-IV | 16 |" in markdown
    assert "- **frame_error** (lower is better): manifest (backbone toy)" in markdown
    with Image.open(out_dir / "quality_cost.png") as image:
        assert image.format == "PNG" and image.size == (768, 576)  # 6.4 × 4.8 inches at 120 dpi
        pixels = np.asarray(image.convert("RGB"))
    colours = {tuple(c) for c in pixels.reshape(-1, 3)}
    assert len(colours) > 50  # text, axes, grid and markers, not a blank canvas
    for marker in ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)):  # the two programs' points (matplotlib's first two colours)
        assert marker in colours


# -- the numbers, recomputed from the manifests -------------------------------------------------------


def test_cost_per_video_is_the_manifests_and_the_programs_cost_formula(evaluated, batch_dir):
    from ivmixed.program import parse

    _, report = evaluated
    table = values_by_video(batch_dir)
    for row in report["per_program"]:
        cost = parse(row["program"]).cost(num_steps=STEPS, num_frames=FRAMES)
        mine = [v for k, v in table.items() if k[0] == row["program"]]
        assert {(v["idm"], v["vdm"]) for v in mine} == {(cost.idm_image_evals, cost.vdm_clip_evals)}
        assert row["idm_image_evals"] == cost.idm_image_evals and row["vdm_clip_evals"] == cost.vdm_clip_evals
        assert row["model_evals"] == pytest.approx(cost.vdm_clip_evals + cost.idm_image_evals / FRAMES, abs=1e-4)
        per_prompt = [np.mean([v["seconds"] for k, v in table.items() if k[:2] == (row["program"], item)]) for item in sorted({k[1] for k in table})]
        assert row["seconds"] == pytest.approx(np.mean(per_prompt), abs=1e-6)
    origin, ivmixed = (next(r for r in report["per_program"] if r["program"] == p) for p in PROGRAMS)
    assert report["paired"][0]["cost_ratio"] == pytest.approx(ivmixed["model_evals"] / origin["model_evals"], abs=1e-4)
    assert ivmixed["model_evals"] > origin["model_evals"]


def test_per_program_mean_and_95_interval_over_prompts_match_the_manifests(evaluated, batch_dir):
    _, report = evaluated
    table = values_by_video(batch_dir)
    items = sorted({k[1] for k in table})
    assert len(items) == 8
    for row in report["per_program"]:
        assert (row["videos"], row["prompts"], row["seeds"]) == (16, 8, 2)
        for name in (*TOY_METRICS, "motion"):
            per_prompt = [np.mean([table[(row["program"], item, s)][name] for s in range(SEEDS)]) for item in items]
            mean, half = mean_and_halfwidth(per_prompt)
            assert row[name] == pytest.approx(mean, abs=1e-6), name  # the report rounds to 6 decimals
            assert row[f"{name}_ci95"] == pytest.approx(half, abs=2e-6), name


def test_paired_differences_and_their_bootstrap_interval_match_the_manifests(evaluated, batch_dir):
    _, report = evaluated
    table = values_by_video(batch_dir)
    (row,) = report["paired"]
    assert (row["program"], row["baseline"], row["pairs"]) == ("IV-IV", "origin", 16)
    items = sorted({k[1] for k in table})
    for item in items:
        for s in range(SEEDS):  # a pair shares its seed, so its initial noise
            assert table[("IV-IV", item, s)]["seed"] == table[("origin", item, s)]["seed"]
    resamples, seed = report["statistics"]["resamples"], report["statistics"]["seed"]
    assert (resamples, seed) == (2000, 0)
    for name in (*TOY_METRICS, "motion"):
        diffs = {item: [table[("IV-IV", item, s)][name] - table[("origin", item, s)][name] for s in range(SEEDS)] for item in items}
        mean = np.mean([d for ds in diffs.values() for d in ds])
        assert row[name] == pytest.approx(mean, abs=1e-6), name
        assert row[f"{name}_pairs"] == 16
        # the documented bootstrap: resample the 8 prompts with replacement (all seeds of a prompt together)
        draws = np.random.default_rng(seed).integers(0, len(items), size=(resamples, len(items)))
        means = [np.mean([d for i in draw for d in diffs[items[i]]]) for draw in draws]
        low, high = np.percentile(means, [2.5, 97.5])
        assert (row[f"{name}_low"], row[f"{name}_high"]) == (pytest.approx(low, abs=1e-6), pytest.approx(high, abs=1e-6)), name
        assert row[f"{name}_low"] <= row[name] + 1e-6 and row[name] <= row[f"{name}_high"] + 1e-6
        # and it is about the normal interval of a mean over 8 prompt means (a loose check of the scale)
        cluster = [np.mean(diffs[i]) for i in items]
        normal = 1.96 * np.std(cluster) / math.sqrt(len(items))
        if normal > 1e-9:
            assert (high - low) / 2 == pytest.approx(normal, rel=0.35), name
        else:
            assert high - low == pytest.approx(0, abs=1e-9)


def test_the_iv_iv_world_shows_its_known_effect(evaluated):
    """Sanity of the toy world itself (docs/toy.md): IV-IV's frames are closer to sharp frames than origin's."""
    _, report = evaluated
    (row,) = report["paired"]
    assert row["frame_error"] < 0 and row["frame_error_high"] < 0


def test_swapping_the_baseline_negates_every_paired_difference(evaluated, batch_dir, tmp_path):
    _, report = evaluated
    status, out, err = run_cli("eval", batch_dir, "--baseline", "IV-IV", "--out", tmp_path / "swap", "--no-plot", "--quiet")
    assert status == 0, err
    assert "paired differences against IV-IV on the same (prompt, seed):" in out
    swapped = json.loads((tmp_path / "swap" / "eval.json").read_text())
    assert not (tmp_path / "swap" / "quality_cost.png").exists()
    (a,), (b,) = report["paired"], swapped["paired"]
    assert b["program"] == "origin" and b["baseline"] == "IV-IV"
    assert b["cost_ratio"] == pytest.approx(1 / a["cost_ratio"], abs=1e-4)
    for name in (*TOY_METRICS, "motion"):
        assert b[name] == pytest.approx(-a[name], abs=1e-6)
        assert (b[f"{name}_low"], b[f"{name}_high"]) == (pytest.approx(-a[f"{name}_high"], abs=1e-6), pytest.approx(-a[f"{name}_low"], abs=1e-6))


def test_clip_metrics_on_a_tiny_random_clip_match_the_metric_on_the_files(batch_dir, tmp_path, tmp_path_factory, torch_single_thread):
    pytest.importorskip("transformers")
    from ivmixed.metrics import load_metric
    from ivmixed.testing.tiny_vision import tiny_clip

    clip = tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")
    status, out, err = run_cli(
        "eval", batch_dir, "--metrics", "clip_score,frame_consistency", "-m", f"clip_score.model={clip}", "-m", "clip_score.device=cpu",
        "-m", f"frame_consistency.model={clip}", "-m", "frame_consistency.device=cpu", "--out", tmp_path / "clip", "--quiet",
    )
    assert status == 0, err
    report = json.loads((tmp_path / "clip" / "eval.json").read_text())
    assert "Δ clip_score" in out and "Δ frame_consistency" in out
    assert report["metrics"]["clip_score"]["options"]["model"] == str(clip)
    score = load_metric("clip_score", model=str(clip), device="cpu")
    consistency = load_metric("frame_consistency", model=str(clip), device="cpu")
    prompts = {f"{i:05d}": p for i, p in enumerate(PROMPTS, start=1)}
    assert len(report["videos"]) == 32 and all(np.isfinite(v["metrics"]["clip_score"]) for v in report["videos"])
    checked = [v for v in report["videos"] if v["item"] in ("00001", "00006")]  # both programs and seed indices, both looks
    assert len(checked) == 8
    for video in checked:
        frames = np.load(batch_dir / video["file"])
        assert video["prompt"] == prompts[video["item"]]
        assert video["metrics"]["clip_score"] == pytest.approx(score(frames, video["prompt"]), abs=1e-6)
        assert video["metrics"]["frame_consistency"] == pytest.approx(consistency(frames, video["prompt"]), abs=1e-6)
    assert (tmp_path / "clip" / "quality_cost.png").stat().st_size > 0  # y defaults to clip_score


def test_mp4_videos_are_read_back_at_the_generated_size(batch_dir, tmp_path):
    """The default video type: the same items and seeds as the .npy batch give the same videos, read back at 8 bits."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    status, _, err = run_cli("batch", prompts, "--programs", ",".join(PROGRAMS), "--steps", STEPS, "--limit", 2, "--out", tmp_path / "mp4", "--quiet")
    assert status == 0, err
    status, out, err = run_cli("eval", tmp_path / "mp4", "--no-plot", "--quiet")
    assert status == 0, err
    report = json.loads((tmp_path / "mp4" / "eval" / "eval.json").read_text())
    assert len(report["videos"]) == 4 and {v["file"].rsplit(".", 1)[1] for v in report["videos"]} == {"mp4"}
    from ivmixed.eval import read_frames

    for video in report["videos"]:
        exact = np.load(batch_dir / video["file"].replace(".mp4", ".npy"))
        frames = read_frames(tmp_path / "mp4" / video["file"], height=16, width=16)
        assert frames.shape == exact.shape == (FRAMES, 16, 16, 3)
        # 8 bits (±0.5/255) plus the codec's loss on a mid-grey picture: a few levels at most
        assert np.abs(frames - exact).max() < 6 / 255
        manifest = json.loads((tmp_path / "mp4" / (video["file"] + ".json")).read_text())
        same = json.loads((batch_dir / (video["file"].replace(".mp4", ".npy") + ".json")).read_text())
        assert manifest["metrics"] == same["metrics"]  # the backbone's exact metrics do not depend on the file type


def test_missing_or_unreadable_videos_are_skipped_and_named_the_rest_still_paired(batch_dir, tmp_path):
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(batch_dir, partial, ignore=shutil.ignore_patterns("eval"))
    (partial / "IV-IV" / "00003-1.npy").unlink()
    (partial / "origin" / "00005-0.npy.json").write_text("{not json", encoding="utf-8")
    status, out, err = run_cli("eval", partial, "--no-plot", "--quiet")
    assert status == 0, err
    report = json.loads((partial / "eval" / "eval.json").read_text())
    assert sorted(report["skipped"]) == [
        "IV-IV/00003-1: the video 00003-1.npy is missing",
        "origin/00005-0: unreadable manifest 00005-0.npy.json (JSONDecodeError)",
    ]
    assert "2 video(s) skipped: " in out and all(reason in out for reason in report["skipped"])
    rows = {r["program"]: r for r in report["per_program"]}
    assert (rows["origin"]["videos"], rows["IV-IV"]["videos"]) == (15, 15)
    assert report["paired"][0]["pairs"] == 14  # neither (00003, 1) nor (00005, 0) has both videos


# -- refusals ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--baseline", "II-II"], "--baseline 'II-II': the batch has no videos of that program; its programs are: origin, IV-IV"),
        (["--plot-y", "sharpness"], "plot y axis 'sharpness' is not measured here; choose one of: frame_error, coherence, video_error, prompt_accuracy, motion"),
        (["--metrics", "clip_score"], "metric 'clip_score' needs the model 'openai/clip-vit-large-patch14', which is neither a local folder"),
        (["--metrics", "sharpness"], "sharpness"),
        (["--bootstrap", "0"], "--bootstrap must be an integer >= 1 (resamples), got 0"),
        (["-m", "motion.scale=2"], "metric 'motion' does not take option(s) scale; it takes: none"),
        (["-m", "clip_score.model=/x"], "options given for metric(s) clip_score, which are not measured; add them to --metrics"),
    ],
)
def test_bad_input_is_refused_in_one_line_with_exit_2_and_nothing_written(batch_dir, tmp_path, extra, message):
    out_dir = tmp_path / "never"
    status, out, err = run_cli("eval", batch_dir, "--out", out_dir, "--quiet", *extra)
    assert status == 2
    assert err.startswith("ivmixed eval: error: ") and message in err and err.count("\n") == 1, err
    assert out == "" and not out_dir.exists()


def test_a_folder_that_is_not_a_batch_is_refused(tmp_path):
    status, _, err = run_cli("eval", tmp_path / "missing")
    assert (status, err) == (2, f"ivmixed eval: error: batch folder {tmp_path / 'missing'} does not exist\n")
    status, _, err = run_cli("eval", tmp_path)
    assert status == 2 and "is not a batch folder (it has no index.jsonl)" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("df", [1, 2, 7, 30, 31, 45, 200])
def test_the_t_quantile_leaves_2_5_percent_in_each_tail(df):
    """∫_0^q of Student's t density = 0.475, by Simpson's rule on the density written out (no statistics library)."""
    from ivmixed.eval import t_quantile_975

    q = t_quantile_975(df)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    density = lambda x: math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))  # noqa: E731
    n = 2000
    h = q / n
    area = h / 3 * sum((1 if i in (0, n) else 4 if i % 2 else 2) * density(i * h) for i in range(n + 1))
    assert area == pytest.approx(0.475, abs=2e-7)
