"""Writes notebooks/04_evaluate.ipynb and executes it, so that it is stored with its outputs.

    python tools/make_notebook_04.py            # build, run (in a temporary folder) and write the notebook
    python tools/make_notebook_04.py --no-run   # write it without outputs

The test suite runs it again (tests/test_notebook_04.py) and checks that the stored cells are the ones built here.
"""

import argparse
import tempfile
from pathlib import Path

import nbformat as nbf

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_evaluate.ipynb"


def build() -> nbf.NotebookNode:
    cells = []
    md = lambda s: cells.append(nbf.v4.new_markdown_cell(s.strip()))  # noqa: E731
    code = lambda s: cells.append(nbf.v4.new_code_cell(s.strip()))  # noqa: E731

    md(r"""
# 04 · Evaluate: batch → eval → the quality–cost picture

Does `IV-IV` beat `origin` on *your* prompts, by how much, and at what cost? Three commands answer it:

1. `ivmixed batch` generates every prompt × program × seed, all programs of one (prompt, seed) from the same noise;
2. `ivmixed eval` measures every video, averages per program (mean ± 95% interval over prompts) and compares each
   program with a baseline **on the same (prompt, seed)** — paired differences with bootstrap intervals;
3. the plot puts quality against cost (model evaluations per video), one point per program.

Here everything runs on the toy world (exact metrics, a CPU, seconds): 2 programs × 8 prompts × 2 seeds. The
same commands for a real backbone and real metrics are at the end.
""")

    code(r"""
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt

started = time.perf_counter()


def ivmixed(command: str) -> None:
    # run an ivmixed command line as a shell would (with this kernel's Python), show it and what it printed
    print("$ ivmixed " + command)
    done = subprocess.run([sys.executable, "-m", "ivmixed", *shlex.split(command)], capture_output=True, text=True)
    print((done.stdout + done.stderr).strip("\n") + "\n")
    if done.returncode != 0:
        raise RuntimeError(f"ivmixed exited with status {done.returncode}")


prompts = [f"a {look} blob moving {way}" for look in ("bright", "dark") for way in ("right", "left", "up", "down")]
Path("prompts.txt").write_text("\n".join(prompts) + "\n")
print(Path("prompts.txt").read_text())
""")

    md(r"""
## 1 · Generate

`--format npy` keeps the exact float frames: the toy's mid-grey background sits on an 8-bit rounding boundary,
so in an `.mp4` or `.gif` it flickers by one level and a frame-difference metric would count that as motion.
Real videos are 8-bit anyway; keep the default `.mp4` for them. Ten steps keep this fast.
""")

    code(r"""
ivmixed("batch prompts.txt --programs origin,IV-IV --seeds 2 --steps 10 --format npy --out runs/toy --quiet")
for line in Path("runs/toy/index.jsonl").read_text().splitlines()[:2]:
    print(line)
""")

    md(r"""
Every video has a manifest beside it (`runs/toy/IV-IV/00001-0.npy.json`): the program, the seed, the settings, the
exact network evaluations it cost and — for the toy world — its exact metrics. `ivmixed eval` reads those and
measures the frames with any registered metric (`ivmixed list --metrics`); `motion` needs no weights.
""")

    code(r"""
ivmixed("list --metrics")
""")

    md(r"""
## 2 · Evaluate
""")

    code(r"""
ivmixed("eval runs/toy --metrics motion --quiet")
""")

    md(r"""
**Reading the tables.** The first table has one row per program: how many videos, the cost per video — `model
evals` counts one VDM clip evaluation as 1 and one IDM pass over all frames as 1 (the paper's count; CFG
doubling included in the two columns beside it) — the seconds of sampling, and every metric as mean ± the
half-width of its 95% Student-t interval over the 8 prompts (the two seeds of a prompt are averaged first: they are
not independent draws of the prompt set).

The second table is the one to decide with. For every (prompt, seed) present in both programs it takes the
difference program − baseline — both videos started from the same noise, so the prompt-to-prompt spread cancels —
and reports the mean difference with a 95% percentile bootstrap interval that resamples whole prompts. An interval
that excludes 0 is a difference that these prompts support; `cost ×` is what it costs. `frame_error` and
`video_error` are lower-is-better, so a negative Δ is an improvement.
""")

    code(r"""
report = json.loads(Path("runs/toy/eval/eval.json").read_text())
(paired,) = report["paired"]
for name in ("frame_error", "coherence", "motion"):
    print(f"{name:12s} IV-IV − origin = {paired[name]:+.5f}  95% [{paired[name + '_low']:+.5f}, {paired[name + '_high']:+.5f}]"
          f"  over {paired[name + '_pairs']} pairs")
print(f"cost: {paired['cost_ratio']:.1f}× origin's model evaluations")
""")

    md(r"""
## 3 · The quality–cost picture

`ivmixed eval` wrote `runs/toy/eval/quality_cost.png` (`--plot-y` picks the metric, `--plot-x` the cost measure).
The same picture from Python, two metrics side by side — with error bars of the 95% intervals over prompts:
""")

    code(r"""
from ivmixed.eval import evaluate

report = evaluate("runs/toy", metrics=["motion"], progress=False)
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
report.plot(x="model_evals", y="frame_error", ax=axes[0], title="frame error against cost")
report.plot(x="model_evals", y="motion", ax=axes[1], title="motion against cost")
plt.tight_layout()
""")

    md(r"""
**What this shows.** At 5× the model evaluations, `IV-IV`'s frames are closer to sharp frames than `origin`'s
(the paired interval of Δ frame_error lies below 0) and every move stays correct (coherence 1 for both). Note
that the two programs' error bars overlap while the paired interval excludes 0: the bars carry the spread
*between prompts*, which pairing on the same (prompt, seed) removes — compare programs with the second table,
not by eye on the plot. Its
motion is *lower*: the toy's VDM renders a wider, fainter blob, and sharper frames of a small blob change fewer
pixels per step — motion is a diagnostic (is the video frozen?), not a score, which is why it has no better direction.

## The same on a real backbone

Nothing changes but the backbone, the prompt file and the metrics. With the weights local (see the README's
"First run with real weights"), e.g. ChronoMagic-Bench-150 on AnimateDiff, then CLIP-based metrics from a local
CLIP folder:

```bash
ivmixed batch Captions_ChronoMagic-Bench-150.csv --prompt-column name --id-column videoid \
    --backbone animatediff --programs origin,IV-IV --seeds 3 --out runs/chronomagic
ivmixed eval runs/chronomagic --metrics clip_score,frame_consistency,motion \
    -m clip_score.model=/models/clip-vit-large-patch14 -m frame_consistency.model=/models/clip-vit-large-patch14 \
    -m clip_score.device=cuda -m frame_consistency.device=cuda --baseline origin
```

VBench's prompt lists work the same way: `prompts/prompts_per_dimension/subject_consistency.txt` as it is, or
`VBench_full_info.json` (one dimension with `read_prompts(path, dimension=...)` in Python). `clip_score` and
`frame_consistency` default to `openai/clip-vit-large-patch14` from the Hugging Face cache (they never download);
`frame_consistency.model` may also be a DINO/ViT folder such as `facebook/dino-vitb16`.
""")

    code(r"""
print(f"notebook ran in {time.perf_counter() - started:.1f} s")
""")

    nb = nbf.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-run", action="store_true", help="write the notebook without executing it")
    args = parser.parse_args()
    nb = build()
    if not args.no_run:
        from nbclient import NotebookClient

        with tempfile.TemporaryDirectory() as work:
            NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": work}}).execute()
    nbf.write(nb, NOTEBOOK)
    print(f"wrote {NOTEBOOK}")


if __name__ == "__main__":
    main()
