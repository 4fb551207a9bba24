"""Sweeps: the Python API (paired seeds, mean ± 95% interval, cost) and ``ivmixed sweep`` (table, JSON, plot, errors)."""

import json
import math

import pytest

from ivmixed import parse
from ivmixed.backbones.toyworld import ToyBackbone
from ivmixed.cli import main
from ivmixed.schedules import GuidanceTable
from ivmixed.sweep import (
    PAPER_FORMS,
    TRUE_ROW,
    attribution,
    attribution_windows,
    format_attribution,
    format_table,
    plot,
    summarise,
    sweep,
    t_quantile_975,
)

FAST = ["--steps", "6", "--frames", "4", "--quiet"]
METRICS = ("frame_error", "coherence", "video_error", "prompt_accuracy")


@pytest.fixture(scope="module")
def toy():
    return ToyBackbone()


def test_summarise_is_mean_and_student_t_interval():
    mean, ci = summarise([1.0, 2.0, 3.0])
    assert mean == 2.0 and ci == pytest.approx(4.302653 * 1.0 / math.sqrt(3))
    assert summarise([5.0]) == (5.0, None)
    assert summarise([None, None]) == (None, None)
    assert summarise([1.0, None, 3.0])[0] == 2.0
    # the exact quantile (the one eval uses), not the normal 1.96, beyond 30 runs
    assert t_quantile_975(1) == 12.706205 and t_quantile_975(30) == 2.042272
    assert t_quantile_975(200) == pytest.approx(1.971896, abs=1e-6) and t_quantile_975(31) == pytest.approx(2.039513, abs=1e-6)


def test_sweep_rows_hold_cost_and_intervals(toy):
    seen = []
    rows = sweep(toy, ["origin", "IV-IV", parse("RR-II:nf")], 3, steps=6, frames=4, progress=False, on_run=seen.append)
    assert [r["program"] for r in rows] == ["origin", "IV-IV", "RR-II:nf"]
    assert [(s["program"], s["seed"]) for s in seen][:3] == [("origin", 0), ("origin", 1), ("origin", 2)]
    for r in rows:
        assert r["runs"] == 3 and r["clips"] == 3 * len(toy.prompts)
        assert {k: r[k] for k in ("idm_image_evals", "vdm_clip_evals")} == parse(r["program"]).cost(num_steps=6, num_frames=4).as_dict()
        for m in METRICS:
            runs = [s["metrics"][m] for s in seen if s["program"] == r["program"]]
            mean, ci = summarise(runs)
            assert r[m] == pytest.approx(mean, abs=1e-6) and r[f"{m}_ci95"] == pytest.approx(ci, abs=1e-6)
            assert r[f"{m}_ci95"] >= 0


def test_every_program_sees_the_same_seeds(toy):
    once = sweep(toy, ["origin", "V-V"], [5, 9], steps=6, frames=4, progress=False)
    again = sweep(toy, ["V-V", "origin"], [5, 9], steps=6, frames=4, progress=False)
    assert once[0] == {**again[1], "seconds_per_run": once[0]["seconds_per_run"]}
    assert once[1]["frame_error"] == again[0]["frame_error"]


def test_sweep_refuses_what_it_sets_itself(toy):
    with pytest.raises(TypeError, match="sets 'seed' itself"):
        sweep(toy, ["origin"], 1, seed=3)
    with pytest.raises(ValueError, match="at least one seed"):
        sweep(toy, ["origin"], 0)


def test_format_table_shows_cost_and_mean_plus_minus_interval(toy):
    rows = sweep(toy, ["origin", "I-I"], 2, steps=6, frames=4, progress=False)
    text = format_table(rows)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["program", "IDM", "img"] and "frame_error" in lines[0]
    assert lines[2].startswith("origin") and lines[3].startswith("I-I") and " ± " in lines[3]
    assert lines[-1].startswith("mean ± 95% interval over 2 seeds (Student t)")
    md = format_table(rows, markdown=True).splitlines()
    assert md[0].startswith("| program | IDM img evals | VDM clip evals | frame_error") and md[1].startswith("|---|")


def test_cli_json_lists_one_object_per_program(capsys):
    assert main(["sweep", "--programs", "origin,IV-IV,VV-VV@66.7%", "--seeds", "2", "--json", *FAST]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["program"] for r in rows] == ["origin", "IV-IV", "VV-VV@66.7%"]
    for r in rows:
        for key in ("program", "frame_error", "coherence", "video_error", "prompt_accuracy", "idm_image_evals", "vdm_clip_evals"):
            assert key in r
        assert r["frame_error_ci95"] is not None and r["runs"] == 2
    assert rows[1]["idm_image_evals"] == 2 * 2 * 4 * 6 and rows[1]["vdm_clip_evals"] == (2 + 1) * 2 * 6


def test_cli_table_and_plot(tmp_path, capsys):
    plot = tmp_path / "fig" / "forms.png"
    assert main(["sweep", "--programs", "origin,I-I,IV-IV:nf", "--seeds", "2", "--plot", str(plot), "-o", "world=large-mismatch", *FAST]) == 0
    captured = capsys.readouterr()
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = captured.out.splitlines()
    assert [line.split()[0] for line in lines[2:5]] == ["origin", "I-I", "IV-IV:nf"]
    assert f"wrote {plot}" in captured.err


def test_cli_default_programs_are_the_papers_forms():
    from ivmixed.cli import build_parser

    args = build_parser().parse_args(["sweep"])
    assert args.programs == ",".join(PAPER_FORMS) and args.seeds == 4 and args.backbone == "toy"
    assert PAPER_FORMS == ("origin", "R-I", "RR-II", "R-V", "RR-VV", "I-I", "II-II", "V-V", "VV-VV", "IV-IV", "VI-VI", "II-VV")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--programs", "origin,IX-IV"], "unknown letter 'X'"),
        (["--programs", "origin,,IV-IV"], "empty item"),
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--plot", "fig.jpg"], "--plot fig.jpg: use a file name ending in .png, .pdf, .svg"),
        (["--prompt", "a blob moving sideways"], "does not know the word(s) 'sideways'"),
        (["--backbone", "nope"], "unknown backbone 'nope'"),
    ],
)
def test_cli_errors_exit_2(capsys, argv, message):
    programs = [] if "--programs" in argv else ["--programs", "origin"]
    assert main(["sweep", *argv, *programs, *FAST]) == 2
    assert message in capsys.readouterr().err


# -- distribution metrics, the true-world row, attribution ------------------------------------------------


def test_rows_hold_distribution_metrics_and_the_true_world_is_the_floor(toy):
    rows = sweep(toy, ["origin", "VV-VV"], 3, steps=6, frames=4, progress=False, true_samples=True)
    assert [r["program"] for r in rows] == [TRUE_ROW, "origin", "VV-VV"]
    true_row = rows[0]
    assert true_row["idm_image_evals"] == 0 and true_row["clips"] == 3 * len(toy.prompts)
    for r in rows:
        assert r["energy_distance"] is not None and r["energy_distance_ci95"] is not None and r["spread_ratio"] is not None
    assert abs(true_row["energy_distance"]) < min(r["energy_distance"] for r in rows[1:])
    assert 0.8 < true_row["spread_ratio"] < 1.2 and true_row["coherence"] == 1.0
    head = format_table(rows).splitlines()[0].split()
    assert head[head.index("frame_error") + 1 : head.index("frame_error") + 3] == ["energy_distance", "spread_ratio"]
    assert "energy_distance, spread_ratio: over prompts" in format_table(rows).splitlines()[-1]


def test_attribution_windows_and_gains(toy):
    assert [(name, str(w)) for name, w in attribution_windows(50)] == [
        ("first fifth", "0..9"), ("middle fifth", "20..29"), ("last fifth", "40..49"), ("last step", "49..49")]
    assert [str(w) for _, w in attribution_windows(3)] == ["0..0", "1..1", "2..2", "2..2"]
    seen = []
    rows = sweep(toy, ["origin", "IV-IV@4..4"], 2, steps=5, frames=4, progress=False, on_run=seen.append)
    out = attribution(toy, "IV-IV", 2, steps=5, frames=4, progress=False)
    assert [r["window"] for r in out] == ["all steps", "first fifth", "middle fifth", "last fifth", "last step"]
    assert [r["program"] for r in out] == ["IV-IV", "IV-IV@0..0", "IV-IV@2..2", "IV-IV@4..4", "IV-IV@4..4"]
    last = out[-1]
    assert last["frame_error"] == rows[1]["frame_error"]  # the same runs as a plain sweep on the same seeds
    assert last["frame_error_gain"] == pytest.approx(rows[0]["frame_error"] - rows[1]["frame_error"], abs=2e-6)
    diffs = [a["metrics"]["frame_error"] - b["metrics"]["frame_error"] for a, b in zip(seen[:2], seen[2:])]
    assert last["frame_error_gain_ci95"] == pytest.approx(summarise(diffs)[1], abs=2e-6)
    assert out[0]["frame_error_share"] == 1.0
    assert last["frame_error_share"] == pytest.approx(last["frame_error_gain"] / out[0]["frame_error_gain"], abs=1e-3)
    assert last["coherence_gain"] == pytest.approx(last["coherence"] - out[0]["origin"]["coherence"], abs=2e-6)
    text = format_attribution(out)
    assert text.splitlines()[2].startswith("all steps") and "(100%)" in text
    with pytest.raises(ValueError, match="one zigzag form on every step"):
        attribution(toy, "IV-IV@0..3", 1, steps=5)


def test_cli_attribution_table_and_bars(tmp_path, capsys):
    bars = tmp_path / "attr.png"
    assert main(["sweep", "--attribution", "IV-IV", "--seeds", "2", "--plot", str(bars), *FAST]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[2:7]] == ["all", "first", "middle", "last", "last"]
    assert bars.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["sweep", "--attribution", "IV-IV", "--programs", "origin", *FAST]) == 2
    assert "leave out --programs" in capsys.readouterr().err
    assert main(["sweep", "--attribution", "origin", *FAST]) == 2


def test_cli_true_samples_row(capsys):
    assert main(["sweep", "--programs", "origin", "--true-samples", "--seeds", "2", "--json", *FAST]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["program"] for r in rows] == [TRUE_ROW, "origin"] and rows[0]["energy_distance"] < rows[1]["energy_distance"]


def test_cli_preset_is_refused_or_applied(capsys):
    from ivmixed.backbones.base import Preset
    from ivmixed.registry import register_backbone, unregister_backbone

    assert main(["sweep", "--programs", "origin", "--preset", "nope", *FAST]) == 2
    assert "no such preset" in capsys.readouterr().err

    def factory(**options):
        bb = ToyBackbone(**options)
        bb.defaults.presets["flat"] = Preset(zigzag=GuidanceTable.uniform(0.0))
        return bb

    register_backbone("toy-with-preset", factory)
    try:
        common = ["sweep", "--programs", "II-II", "--seeds", "1", "--json", "--backbone", "toy-with-preset", *FAST]
        assert main([*common, "--preset", "flat"]) == 0
        flat = json.loads(capsys.readouterr().out)[0]
        assert main([*common, "--zigzag-guidance", "0"]) == 0
        zero = json.loads(capsys.readouterr().out)[0]
        assert main(common) == 0
        default = json.loads(capsys.readouterr().out)[0]
    finally:
        unregister_backbone("toy-with-preset")
    assert flat["frame_error"] == zero["frame_error"] and flat["frame_error"] != default["frame_error"]


def test_cli_plot_without_matplotlib_says_how_to_install(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    assert main(["sweep", "--programs", "origin", "--plot", "x.png", *FAST]) == 2
    err = capsys.readouterr().err
    assert "--plot needs matplotlib" in err and "pip install matplotlib" in err


def test_plot_labels_do_not_overlap(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    # a crowded panel: twelve points within a few thousandths of each other
    rows = [{"program": p, "frame_error": 0.04 + 0.0003 * (i % 4), "coherence": 1.0 - 0.002 * (i // 4),
             "energy_distance": 0.02 + 0.0001 * i, "spread_ratio": 1.0} for i, p in enumerate(PAPER_FORMS)]
    axes = plot(rows, tmp_path / "crowded.png")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = axes[0].figure
    renderer = FigureCanvasAgg(fig).get_renderer()
    for ax in axes:
        boxes = [t.get_window_extent(renderer) for t in ax.texts]
        assert len(boxes) == len(rows)
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert not a.overlaps(b), (a, b)
