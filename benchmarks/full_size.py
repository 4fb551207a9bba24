"""Every default network at full size with random weights on the CPU: parameters, peak memory, seconds per evaluation.

For each network of :mod:`ivmixed.testing.real_models` (the SD1.5 UNet, the AnimateDiff motion UNet, the
ModelScope and VideoCrafter2 3-D UNets, the text encoders, the VAEs, and the SDXL and few-step families: the
SDXL UNet and its motion UNet, OpenCLIP bigG, the SDXL VAE, the Lightning / AnimateLCM motion UNet and the
motion adapters) this builds it at its published configuration in fp32 on the CPU — no download — and times
one guided evaluation through ivmixed's own score adapters: the doubled CFG batch (2 rows) of 2 frames of
16×16 latents at timestep 500 (SDXL UNets with their pooled embedding and time ids; text encoders: the
prompt pair; the VAE: decoding those frames). Each network runs in its own process, so its peak resident
memory (``ru_maxrss``) is its own. The parameter count is compared with the published weight sizes
(``tests/data/hub_layouts.json``). This is a measurement script, not a test::

    python benchmarks/full_size.py                 # a table
    python benchmarks/full_size.py --json          # the same figures as JSON
    python benchmarks/full_size.py --models sd15_unet,sd_vae --repeats 3 --threads 2

A network whose estimated peak (fp32 weights, twice for a motion UNet, which is assembled from its image UNet
and adapter, plus 1.5 GB for activations) does not fit in the memory limit is not built: its row says
``skipped`` with the reason, so nothing swaps. The limit is the smaller of 24 GiB and the memory available
when the run starts less 1.5 GB for the rest of the machine (``--memory-limit-gb`` sets it). On a 24 GiB
machine that skips the SDXL motion UNet (2.80 B parameters, about 22 GB of weights while it is assembled);
the SDXL UNet (2.57 B, 10.3 GB) needs about 12 GB free. The other networks need at most about 11 GB (the
AnimateDiff motion UNets) and the run takes a few minutes.
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

#: the memory this benchmark allows itself at most (the machines it was written for have 24 GiB)
MEMORY_CAP_BYTES = 24 * 2**30
#: activations, the interpreter and the libraries on top of the weights
MARGIN_BYTES = int(1.5e9)
#: left to the rest of the machine out of the memory available at the start
HEADROOM_BYTES = int(1.5e9)


def estimated_peak_bytes(name: str) -> int:
    """A network's expected peak resident memory: fp32 weights (twice for a motion UNet: image UNet and adapter, then the assembled copy) plus a margin."""
    from ivmixed.testing import real_models

    count = real_models.parameter_count(real_models.build(name))  # on meta: no memory
    copies = 2 if real_models.MODELS[name].kind == "motion_unet" else 1
    return 4 * count * copies + MARGIN_BYTES


def available_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` (None where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


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
                    half = ".fp16." in entry["path"] or entry.get("dtype") == "fp16"
                    row = {"repo": repo_id, "file": entry["path"], "published": entry["size_as_published"],
                           "bytes": entry["size_bytes_approx"], "bytes_per_value": 2 if half else 4}
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
        hosts = [n for n, m in real_models.MODELS.items() if m.kind == "motion_unet" and m.config["motion_adapter"] == name]
        return {"model": name, "used_by": list(real_models.MODELS[name].used_by), "parameters": count, "fp32_bytes": 4 * count,
                "published_weights": published(name), "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "build_s": build_s, "seconds_per_evaluation": None, "note": f"evaluated as part of {', '.join(hosts)}"}
    inputs = real_models.latent_example(name, frames=frames, size=size, device="cpu")
    if "x" in inputs:
        inputs = {**inputs, "x": torch.randn_like(inputs["x"]), "cond": torch.randn_like(inputs["cond"])}
        if "text_embeds" in inputs:  # the SDXL pooled embedding; the time ids stay the real ones
            inputs["text_embeds"] = torch.randn_like(inputs["text_embeds"])
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
        "published_weights": published(name),
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
    parser.add_argument("--memory-limit-gb", type=float, help="skip networks whose estimated peak exceeds this (default: "
                        "the smaller of 24 GiB and the memory available at the start less 1.5 GB)")
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
    if args.memory_limit_gb is not None:
        limit, limit_from = int(args.memory_limit_gb * 1e9), "--memory-limit-gb"
    else:
        free = available_bytes()
        usable = None if free is None else free - HEADROOM_BYTES
        limit, limit_from = (MEMORY_CAP_BYTES, "24 GiB cap") if usable is None or usable >= MEMORY_CAP_BYTES else (usable, "available memory less 1.5 GB")
    rows = []
    for name in names:
        needed = estimated_peak_bytes(name)
        if needed > limit:
            from ivmixed.testing.real_models import MODELS as _models, build as _build, parameter_count as _count

            count = _count(_build(name))
            reason = (f"needs about {needed / 1e9:.1f} GB ({count:,} parameters in fp32"
                      f"{', built twice' if _models[name].kind == 'motion_unet' else ''}), over the {limit / 1e9:.1f} GB limit ({limit_from})")
            rows.append({"model": name, "skipped": reason, "parameters": count, "fp32_bytes": 4 * count,
                         "estimated_peak_bytes": needed, "published_weights": published(name)})
            print(f"  skipped {name}: {reason}", file=sys.stderr)
            continue
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
                     "repeats": args.repeats, "threads": args.threads, "torch": torch.__version__,
                     "memory_limit_bytes": limit, "memory_limit_from": limit_from},
        "models": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"full-size random weights, CPU fp32, {args.threads} thread(s); one guided evaluation = 2 CFG rows × "
          f"{args.frames} frames × {args.size}² latents; best of {args.repeats}")
    print(f"{'model':<30} {'parameters':>14} {'fp32 GB':>8} {'published':>22} {'peak RSS GB':>12} {'s/eval':>8}")
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<30} error: {r['error']}")
            continue
        if "skipped" in r:
            print(f"{r['model']:<30} {r['parameters']:>14,} {r['fp32_bytes'] / 1e9:>8.3f}  skipped: {r['skipped']}")
            continue
        pub = ", ".join(p["published"] for p in r["published_weights"][:2]) or "-"
        print(f"{r['model']:<30} {r['parameters']:>14,} {r['fp32_bytes'] / 1e9:>8.3f} {pub:>22} "
              f"{r['peak_rss_bytes'] / 1e9:>12.2f} {r['seconds_per_evaluation'] if r['seconds_per_evaluation'] is None else round(r['seconds_per_evaluation'], 3)!s:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
