"""Writes notebooks/01_toy_world_ablations.ipynb and executes it, storing the outputs (the test suite executes it again).

    python tools/make_notebook_01.py                 # write and execute (about two minutes on a CPU)
    python tools/make_notebook_01.py --no-execute    # write without outputs
"""
import sys
from pathlib import Path

import nbformat as nbf

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01_toy_world_ablations.ipynb"

cells = []
md = lambda s: cells.append(nbf.v4.new_markdown_cell(s.strip()))
code = lambda s: cells.append(nbf.v4.new_code_cell(s.strip()))

md(r"""
# 01 · Ablations in the analytic video world

The `toy` backbone is a video world in which every score is exact (see `docs/toy.md`): clips of a blob moving one
pixel per frame on a 16×16 torus. The **IDM** is the exact score of the *sharp* per-frame marginal (perfect
frames, no notion of time); the **VDM** is the exact score of a *degraded* world — the same trajectories with a
wider, fainter blob (perfect motion, poorer frames). That is the situation IV-mixed sampling addresses, so here
sampling programs can be compared by measurement, in seconds, on a CPU.

Four exact metrics per clip (means over the 8 clips of a run; intervals are 95% Student-t over seeds):

* **frame_error** — RMS pixel distance of each frame to the nearest *sharp* frame of the prompted appearance (lower is better);
* **coherence** — fraction of consecutive frame pairs in which the blob moved exactly as prompted (higher is better);
* **video_error** — RMS distance of the clip to the nearest true clip of the prompt;
* **prompt_accuracy** — whether the nearest true clip over all prompts has the prompted appearance and direction.

This notebook runs the paper's form list in both phase orders, a guidance-scale sweep and a mismatch sweep.
It runs in well under two minutes on a laptop CPU (the test suite executes it).
""")

code(r"""
import time

import matplotlib.pyplot as plt
import torch

import ivmixed
from ivmixed.schedules import GuidanceTable
from ivmixed.sweep import PAPER_FORMS, format_table, plot, sweep

started = time.perf_counter()
toy = ivmixed.load("toy")                             # the default world: mild mismatch
large = ivmixed.load("toy", world="large-mismatch")   # the VDM's blob 2x wider and half as bright
SEEDS = 3                                             # every run = the 8 prompts (2 appearances x 4 directions)
for name, bb in (("default", toy), ("large-mismatch", large)):
    p = bb.describe()["world_parameters"]
    print(f"{name:15s} IDM blob width {p['blob_width']}, contrast {p['contrast']} | "
          f"VDM blob width {p['vdm_blob_width']}, contrast {p['vdm_contrast']} | spread {p['spread']}")
""")

md(r"""
## What the clips look like

Rows: a true clip, the VDM's rendering of the same trajectory, and samples (seed 0) from `origin` (the VDM alone)
and from `IV-IV` in both worlds. Each row is one clip of 8 frames, "a bright blob moving right".
""")

code(r"""
prompt = toy.example_prompt
start = torch.tensor([6 * 16 + 3])
rows = {
    "true clip": toy.render([prompt], start),
    "VDM's world": toy.render([prompt], start, degraded=True),
    "origin": toy.generate(prompt, program="origin", seed=0, progress=False).latents,
    "IV-IV": toy.generate(prompt, program="IV-IV", seed=0, progress=False).latents,
    "origin, large mismatch": large.generate(prompt, program="origin", seed=0, progress=False).latents,
    "IV-IV, large mismatch": large.generate(prompt, program="IV-IV", seed=0, progress=False).latents,
}
fig, axes = plt.subplots(len(rows), 8, figsize=(9, 1.25 * len(rows)))
for r, (label, clip) in enumerate(rows.items()):
    for f in range(8):
        ax = axes[r, f]
        ax.imshow(clip[0, 0, f].float(), cmap="gray", vmin=-1, vmax=1)
        ax.set_xticks([]); ax.set_yticks([])
    axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
plt.tight_layout()
""")

md(r"""
## The paper's forms, both phase orders

`origin`, the re-noising forms `R-I`, `RR-II`, `R-V`, `RR-VV`, the single-model zigzags `I-I`, `II-II`, `V-V`,
`VV-VV`, the method `IV-IV`, and the other mixed orders `VI-VI`, `II-VV` — each run denoise-first (the released
code's order, the default) and noise-first (`:nf`, the paper's figure). Same seeds for every program.
""")

code(r"""
NOISE_FIRST = tuple(f"{form}:nf" for form in PAPER_FORMS if form != "origin")
results = {}
for world, bb in (("default", toy), ("large-mismatch", large)):
    denoise_first = sweep(bb, PAPER_FORMS, SEEDS, progress=False)
    noise_first = denoise_first[:1] + sweep(bb, NOISE_FIRST, SEEDS, progress=False)  # origin has no order
    for order, rows in (("denoise-first", denoise_first), ("noise-first", noise_first)):
        results[world, order] = rows
        print(f"== {world} world, {order} ==")
        print(format_table(rows))
        print()
""")

code(r"""
fig, axes = plt.subplots(2, 2, figsize=(12, 9))
for ax, ((world, order), rows) in zip(axes.flat, results.items()):
    plot(rows, ax=ax, title=f"{world} world, {order}")
plt.tight_layout()
""")

md(r"""
**What this shows.**

*Default world, denoise-first.* Every deterministic zigzag that uses the IDM — `I-I`, `II-II`, `IV-IV`,
`VI-VI` — lowers the per-frame error against `origin` while coherence stays at `origin`'s level (1.0): the
regime the paper is about. Honest qualifications: the VDM-only zigzags `V-V`/`VV-VV` lower the per-frame
error too (a deterministic zigzag contracts the leftover spread around the mixture component, whatever the
model); in this world `II-II` beats `IV-IV` on per-frame error; `II-VV` (IDM inversions, VDM denoising) is
worse than `origin`. The re-noising forms gain less than the deterministic zigzags (`R-I` the most).

*Noise-first.* The paper's figure order helps far less here: only `VI-VI:nf` and `R-I:nf` improve on
`origin`, while `I-I:nf`, `II-II:nf`, `IV-IV:nf` and `II-VV:nf` are worse than `origin`.

*Large mismatch.* Denoise-first, mixing I and V inside one zigzag breaks coherence: `IV-IV` keeps only about a
third of the correct frame-to-frame moves (the blob jitters by a pixel), while `origin`, `VV-VV`, `I-I`,
`II-II` and `VI-VI` stay coherent. Noise-first, the picture moves: the IDM-only zigzags `I-I:nf` and
`II-II:nf` lose coherence and `IV-IV:nf` keeps it but has worse frames than `origin`. Re-noising followed by IDM
denoising (`R-I`, `RR-II`) breaks coherence in both orders.
""")

md(r"""
### Where the denoise-first benefit is earned

The step selectors of the program language answer this directly: run `IV-IV` only on some steps.
""")

code(r"""
windows = ("origin", "IV-IV", "IV-IV@0..39", "IV-IV@40..49", "IV-IV@49..49")
print(format_table(sweep(toy, windows, SEEDS, progress=False)))
""")

md(r"""
Practically all of it comes from the last steps — in this world the last step alone does better than all fifty. On the final
step of a denoise-first zigzag the levels are clamped at 0, so the IDM's denoise sub-step lands on (nearly)
its sharp frame just before the final VDM inversion and the VDM's last standard step, which keep part of it.
At high noise the exact scores of both models agree on what matters (where the blob is), so zigzags there
change nothing measurable. Whether real models behave the same way is exactly the kind of question this
sandbox lets you ask cheaply, but cannot answer for you.
""")

md(r"""
## Guidance scales

The zigzag guidance γ (the same for all four I/V × go/back entries; inversion sub-steps use −γ) and the
standard step's ω, on the default world.
""")

code(r"""
gammas = (0.0, 2.0, 4.0, 8.0)
omegas = (1.0, 4.0, 7.5, 15.0)
# one seed (8 clips) per point: enough to see the size of the effect
by_gamma = {p: [sweep(toy, [p], 1, zigzag=GuidanceTable.uniform(g), progress=False)[0] for g in gammas] for p in ("I-I", "IV-IV")}
by_omega = {p: [sweep(toy, [p], 1, guidance=w, progress=False)[0] for w in omegas] for p in ("origin", "IV-IV")}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for p, rows in by_gamma.items():
    axes[0].plot(gammas, [r["frame_error"] for r in rows], marker="o", label=p)
axes[0].set_xlabel("zigzag guidance γ"); axes[0].set_ylabel("frame error"); axes[0].legend(); axes[0].grid(alpha=0.3)
for p, rows in by_omega.items():
    axes[1].plot(omegas, [r["frame_error"] for r in rows], marker="o", label=p)
axes[1].set_xlabel("standard-step guidance ω"); axes[1].set_ylabel("frame error"); axes[1].legend(); axes[1].grid(alpha=0.3)
plt.tight_layout()
for p, rows in {**{f"{k} vs γ": v for k, v in by_gamma.items()}, **{f"{k} vs ω": v for k, v in by_omega.items()}}.items():
    print(f"{p:12s}", "  ".join(f"fe {r['frame_error']:.4f} coh {r['coherence']:.3f}" for r in rows))
""")

md(r"""
**What this shows.** In this world the guidance scales barely move the metrics. With exact conditional
scores the prompt is settled early and exactly (prompt accuracy is 1 everywhere), so the guidance direction
ε_c − ε_u is nearly zero by the time frames take shape; the zigzag's effect comes from where the IDM and the VDM
*disagree* (their unconditional parts), not from the 2γ guidance gap the paper's first-order analysis
isolates. This is a limitation of the sandbox worth knowing: it cannot tell you which γ ramp to use on a real
model, only how the forms and the phase order behave.
""")

md(r"""
## IDM/VDM mismatch

The mismatch m makes the VDM's blob (1 + m)× wider and 1/(1 + m) as bright. At m = 0 both models render the same
blob (the IDM still has no notion of time).
""")

code(r"""
mismatches = (0.0, 0.5, 1.0, 1.5, 2.0)
forms = ("origin", "VV-VV", "I-I", "II-II", "IV-IV", "VI-VI")
# one seed (8 clips, 56 frame pairs) per point
by_m = {m: sweep(ivmixed.load("toy", mismatch=m), forms, 1, progress=False) for m in mismatches}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for i, form in enumerate(forms):
    rows = [by_m[m][i] for m in mismatches]
    axes[0].plot(mismatches, [r["frame_error"] for r in rows], marker="o", label=form)
    axes[1].plot(mismatches, [r["coherence"] for r in rows], marker="o", label=form)
axes[0].set_xlabel("mismatch m"); axes[0].set_ylabel("frame error (lower is better)")
axes[1].set_xlabel("mismatch m"); axes[1].set_ylabel("coherence (higher is better)")
for ax in axes:
    ax.grid(alpha=0.3); ax.legend(fontsize=8)
plt.tight_layout()
for metric in ("frame_error", "coherence"):
    print(f"{metric:12s}" + "  ".join(f"{f:>6s}" for f in forms))
    for m in mismatches:
        print(f"m = {m:<8}" + "  ".join(f"{r[metric]:6.3f}" for r in by_m[m]))
""")

md(r"""
**What this shows.** As the mismatch grows, every program's per-frame error grows (the VDM's world drifts away
from the true one) and, from m = 0.5 on, the IDM zigzags keep their lead over `origin` and `VV-VV` (at m = 0 every
zigzag is as good as `VV-VV`). Coherence is where the forms
part: the mixed zigzag `IV-IV` is the first to lose it (at m = 1), the IDM-only zigzags `I-I` and `II-II`
follow by m = 1.5, while `VV-VV` and `VI-VI` stay coherent over the whole range and `origin` only starts to slip
at m = 2, where its faint, wide blob is hard to localise. The sandbox's advice: IV-IV helps when the two models
agree on what a frame looks like; when they disagree strongly, check coherence before trusting sharper frames.
""")

md(r"""
## An imperfect world: `world=learned`

The worlds above have exact scores, so guidance cannot matter and a deterministic zigzag wins by removing the
data's own noise. `world=learned` gives the models the errors of learned networks (docs/toy.md): the VDM smooths
fine detail (it assumes twice the spread, an error that grows as the noise falls), the IDM prefers some blob
positions in every frame (`idm_bias`), and the conditional scores only partly separate the prompts (`leak`), so
classifier-free guidance matters. Next to frame_error stand the distribution metric — the energy distance to
exact samples of the true world, per prompt, the toy's FVD — and the spread ratio (1 is right; below 1 a
program collapses the data's variance). The first row is exact samples of the true world: the floor.
""")

code(r"""
learned = ivmixed.load("toy", world="learned")
rows = sweep(learned, PAPER_FORMS, SEEDS, progress=False, true_samples=True)
print("== learned world, denoise-first ==")
print(format_table(rows))
plot(rows, title="learned world, denoise-first")
plt.show()
""")

code(r"""
from ivmixed.sweep import attribution, format_attribution, plot_attribution

gains = attribution(learned, "IV-IV", SEEDS, progress=False)
print(format_attribution(gains))
plot_attribution(gains, title="learned world: where IV-IV's gain comes from")
plt.show()
""")

md(r"""
**What this shows** (the tables in docs/toy.md have 8 seeds). With imperfect models `IV-IV` still gives the
sharpest frames short of `II-II`, but coherence falls (the IDM's position preferences pull each frame its own
way), and the energy distance no longer rewards the zigzags: they collapse the spread (ratio ≈ 0.5) while
`origin` overshoots it (≈ 1.5), and no program reaches the true samples. The attribution puts about nine tenths of
`IV-IV`'s frame-error gain in the last step alone.
""")

code(r"""
print(f"notebook ran in {time.perf_counter() - started:.1f} s")
""")

nb = nbf.v4.new_notebook()
nb.cells = cells
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb.metadata["language_info"] = {"name": "python"}
if "--no-execute" not in sys.argv:
    import nbclient

    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
nbf.write(nb, NOTEBOOK)
