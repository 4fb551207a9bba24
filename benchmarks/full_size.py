"""Every default network at full size with random weights on the CPU: parameters, peak memory, seconds per evaluation.

For each network of :mod:`ivmixed.testing.real_models` (the SD1.5 UNet, the AnimateDiff motion UNet, the
ModelScope and VideoCrafter2 3-D UNets, both text encoders, the VAE) this builds it at its published
configuration in fp32 on the CPU — no download — and times one guided evaluation through ivmixed's own
score adapters: the doubled CFG batch (2 rows) of 2 frames of 16×16 latents at timestep 500 (text encoders:
the prompt pair; the VAE: decoding those frames). Each network runs in its own process, so its peak
resident memory (``ru_maxrss``) is its own. The parameter count is compared with the published weight
sizes (``tests/data/hub_layouts.json``). This is a measurement script, not a test::

    python benchmarks/full_size.py                 # a table
    python benchmarks/full_size.py --json          # the same figures as JSON
    python benchmarks/full_size.py --models sd15_unet,sd_vae --repeats 3 --threads 2

It needs about 6 GB of free memory for the largest network (the 3-D UNets, 1.41 B parameters) and
a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LAYOUTS = Path(__file__).resolve().parents[1] / "tests" / "data" / "hub_layouts.json"


def published(name: str) -> list[dict]:
    """The published sizes of the weight files holding this network (plain and fp16)."""
    from ivmixed.testing.real_models import MODELS

    layouts = json.loads(LAYOUTS.read_text())["repositories"]
    rows = []
    for repo_id, weights in MODELS[name].repositories.items():
        stem, _, suffix = weights.rpartition(".")
        for revision in layouts[repo_id]["revisions"].values():
            for entry in revision["files"]:
                if entry["path"] in (weights, f"{stem}.fp16.{suffix}") and "size_bytes_approx" in entry:
                    row = {"repo": repo_id, "file": entry["path"], "published": entry["size_as_published"], "bytes": entry["size_bytes_approx"]}
                    if row not in rows:
                        rows.append(row)
    return rows


def measure_one(name: str, frames: int, size: int, repeats: int, threads: int) -> dict:
    """Build ``name`` on the CPU and time its evaluation (runs in a child process)."""
    import torch

    from ivmixed.testing import real_models

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    module = real_models.build(name, device="cpu")
    build_s = time.perf_counter() - start
    if real_models.MODELS[name].kind == "adapter":  # not a network of its own: it runs inside the motion UNet
        count = real_models.parameter_count(module)
        return {"model": name, "used_by": list(real_models.MODELS[name].used_by), "parameters": count, "fp32_bytes": 4 * count,
                "published_weights": [], "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "build_s": build_s, "seconds_per_evaluation": None, "note": "evaluated as part of animatediff_motion_unet"}
    inputs = real_models.latent_example(name, frames=frames, size=size, device="cpu")
    if "x" in inputs:
        inputs = {"x": torch.randn_like(inputs["x"]), "cond": torch.randn_like(inputs["cond"])}
    real_models.evaluate(name, module, inputs)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = real_models.evaluate(name, module, inputs)
        times.append(time.perf_counter() - start)
    count = real_models.parameter_count(module)
    return {
        "model": name,
        "used_by": list(real_models.MODELS[name].used_by),
        "parameters": count,
        "fp32_bytes": 4 * count,
        "published_weights": [{**row, "bytes_per_value": 2 if ".fp16." in row["file"] else 4} for row in published(name)],
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "build_s": build_s,
        "seconds_per_evaluation": min(times),
        "evaluation_runs_s": times,
        "output_shape": list(out.shape),
        "output_finite": bool(torch.isfinite(out).all()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", help="comma-separated names (default: all of ivmixed.testing.real_models.MODELS)")
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--size", type=int, default=16, help="latent height = width")
    parser.add_argument("--repeats", type=int, default=3, help="timed evaluations after one warm-up (the best is reported)")
    parser.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process: measure one network, print JSON
    args = parser.parse_args(argv)

    if args.one:
        print(json.dumps(measure_one(args.one, args.frames, args.size, args.repeats, args.threads)))
        return 0

    from ivmixed.testing.real_models import MODELS

    names = [n.strip() for n in args.models.split(",")] if args.models else list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
    rows = []
    for name in names:
        cmd = [sys.executable, __file__, "--one", name, "--frames", str(args.frames), "--size", str(args.size),
               "--repeats", str(args.repeats), "--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            rows.append({"model": name, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]})
        else:
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        if not args.json:
            print(f"  measured {name}", file=sys.stderr)

    import torch

    report = {
        "settings": {"device": "cpu", "dtype": "fp32", "frames": args.frames, "latent_size": args.size, "cfg_rows": 2,
                     "repeats": args.repeats, "threads": args.threads, "torch": torch.__version__},
        "models": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"full-size random weights, CPU fp32, {args.threads} thread(s); one guided evaluation = 2 CFG rows × "
          f"{args.frames} frames × {args.size}² latents; best of {args.repeats}")
    print(f"{'model':<26} {'parameters':>14} {'fp32 GB':>8} {'published':>22} {'peak RSS GB':>12} {'s/eval':>8}")
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<26} error: {r['error']}")
            continue
        pub = ", ".join(p["published"] for p in r["published_weights"][:2]) or "-"
        print(f"{r['model']:<26} {r['parameters']:>14,} {r['fp32_bytes'] / 1e9:>8.3f} {pub:>22} "
              f"{r['peak_rss_bytes'] / 1e9:>12.2f} {r['seconds_per_evaluation'] if r['seconds_per_evaluation'] is None else round(r['seconds_per_evaluation'], 3)!s:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
