"""How much ivmixed adds on top of diffusers: stock pipelines against ivmixed ``origin`` and ``IV-IV``, same tiny models, one process.

For each diffusers backbone (``animatediff``, ``modelscope``) this times, on the tiny random models of the
test suite (built here into a temporary folder, or read from ``--models``):

- the stock diffusers pipeline (``AnimateDiffPipeline`` / ``TextToVideoSDPipeline``, DDIM as configured by
  the backbone, ``output_type="latent"``);
- ivmixed ``origin`` with the same seed, steps and guidance (``decode=False``): origin / stock is the
  library's overhead (goal ≤ 1.05);
- ivmixed ``IV-IV``, against k times ``origin``, k the ratio of their costs in network passes (``vdm_clip_evals +
  idm_image_evals / frames``): 5 at ω ≠ 1 (4 zigzag evaluations plus the standard one per step), 9 at ω = 1, where
  the standard step evaluates the conditional half alone and the zigzag sub-steps both halves:
  IV-IV / (k × origin) (goal ≤ 1.05; it also reflects that the IDM and the VDM do not cost the same).

``--guidance 1`` compares the stock pipeline without CFG against ``origin``'s conditional-half standard step.

Each figure is the best of ``--repeats`` timed runs after one warm-up run, the three kinds of run interleaved. This is a measurement script,
not a test; it prints a table::

    python benchmarks/overhead.py                       # defaults: 16 frames, 64×64 px, 20 steps, 1 thread
    python benchmarks/overhead.py --frames 8 --steps 10 --threads 2 --json
    python benchmarks/overhead.py --guidance 1           # ω = 1: no unconditional pass in the standard step
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def timed(fns: dict, repeats: int) -> dict[str, float]:
    """The best of ``repeats`` timed runs of each function, runs interleaved so that load from other processes
    on a shared machine hits all of them alike (the minimum is the figure least disturbed by such load)."""
    for fn in fns.values():
        fn()  # warm-up
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - start)
    return {name: min(times) for name, times in runs.items()}


def stock_pipeline(name: str, models):
    from diffusers import AnimateDiffPipeline, DDIMScheduler, MotionAdapter, TextToVideoSDPipeline

    if name == "animatediff":
        pipe = AnimateDiffPipeline.from_pretrained(str(models.sd15), motion_adapter=MotionAdapter.from_pretrained(str(models.motion_adapter)))
    else:
        pipe = TextToVideoSDPipeline.from_pretrained(str(models.modelscope))
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False, timestep_spacing="linspace", steps_offset=1)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def measure(name: str, models, args) -> dict:
    import torch

    import ivmixed

    options = (
        {"model": str(models.sd15), "motion_adapter": str(models.motion_adapter), "image_model": str(models.image_unet)}
        if name == "animatediff"
        else {"model": str(models.modelscope), "image_model": str(models.sd15_ms)}
    )
    backbone = ivmixed.load(name, device="cpu", dtype="fp32", **options)
    stock = stock_pipeline(name, models)
    size = dict(num_frames=args.frames, height=args.size, width=args.size, num_inference_steps=args.steps, guidance_scale=args.guidance)
    ours = dict(frames=args.frames, height=args.size, width=args.size, steps=args.steps, guidance=args.guidance, progress=False, decode=False)
    prompt = "Two horses race across a grassy field at sunset."

    def run_stock():
        return stock(prompt, generator=torch.Generator("cpu").manual_seed(0), output_type="latent", **size).frames

    def run(program):
        return lambda: backbone.generate(prompt, program=program, seed=0, **ours).latents

    # the runs being timed compute the same thing
    difference = float((run_stock() - run("origin")()).abs().max())
    assert difference <= 1e-5, f"origin does not reproduce the stock pipeline (max |Δ| {difference:.3g})"
    best = timed({"stock": run_stock, "origin": run("origin"), "iv_iv": run("IV-IV")}, args.repeats)
    t_stock, t_origin, t_iviv = best["stock"], best["origin"], best["iv_iv"]

    def passes(program: str) -> float:
        cost = backbone.generate(prompt, program=program, seed=0, **{**ours, "steps": 2}).cost
        return cost["vdm_clip_evals"] + cost["idm_image_evals"] / args.frames

    k = passes("IV-IV") / passes("origin")
    return {
        "stock_vs_origin_max_abs_difference": difference,
        "k": k,
        "backbone": name,
        "stock_s": t_stock,
        "origin_s": t_origin,
        "iv_iv_s": t_iviv,
        "origin_over_stock": t_origin / t_stock,
        "iv_iv_over_k_origin": t_iviv / (k * t_origin),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="height = width in pixels (multiple of 8)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--guidance", type=float, default=7.5, help="ω of the standard step (default 7.5; 1: no unconditional pass)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: tiny models, steady timings)")
    parser.add_argument("--models", type=Path, help="a folder of tiny models built by ivmixed.testing.tiny (default: build them now)")
    parser.add_argument("--backbones", default="animatediff,modelscope")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from ivmixed.testing import tiny as tiny_models

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        models = tiny_models.build_all(args.models or Path(tmp) / "tiny")
        rows = [measure(name.strip(), models, args) for name in args.backbones.split(",")]

    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"tiny models, {args.frames} frames, {args.size}x{args.size} px, {args.steps} steps, "
        f"{args.threads} thread(s), ω {args.guidance:g}, best of {args.repeats} interleaved runs; torch {torch.__version__}"
    )
    print(f"{'backbone':<12} {'stock s':>9} {'origin s':>9} {'IV-IV s':>9} {'origin/stock':>13} {'k':>3} {'IV-IV/(k·origin)':>17}  max |stock-origin|")
    for r in rows:
        print(
            f"{r['backbone']:<12} {r['stock_s']:>9.4f} {r['origin_s']:>9.4f} {r['iv_iv_s']:>9.4f} "
            f"{r['origin_over_stock']:>13.3f} {r['k']:>3.0f} {r['iv_iv_over_k_origin']:>17.3f}  {r['stock_vs_origin_max_abs_difference']:.3g}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
