"""The GPU benchmark: ivmixed ``origin`` and ``IV-IV`` against stock diffusers, full-size random weights, fp16 on CUDA.

For each diffusers backbone at its paper setting —

- ``animatediff``: 16 frames × 512² × 50 steps (SD1.5 UNet + motion adapter v1-5-3, SD1.5 image UNet);
- ``modelscope``: 16 frames × 256² × 50 steps (ModelScope 3-D UNet, SD1.5 pipeline as the image model);
- ``videocrafter2``: 16 frames × 320×512 × 50 steps (VideoCrafter2 UNet, zeroscope-layout components,
  an SD1.5 pipeline as the image model);

this writes the networks at their published configurations (:mod:`ivmixed.testing.real_models`) with random
weights, fp16, into a temporary folder in the diffusers layouts (no download; about 10 GB of disk), loads
them through ``ivmixed.load`` as a user's folders would be, and measures, after one warm-up run each:

- the stock diffusers pipeline (``AnimateDiffPipeline``, ``TextToVideoSDPipeline`` — for VideoCrafter2 with
  its UNet and the backbone's SDE-DPM-Solver++ — as the backbone configures the scheduler);
- ivmixed ``origin`` (the same sampling) and ``IV-IV``;

each as wall time (CUDA synchronised) and peak allocated CUDA memory, with the ratios origin / stock and
IV-IV / origin. All runs produce latents (no VAE decode), one video, guidance as the backbone's default.

    python benchmarks/gpu.py --json                      # on a CUDA machine
    python benchmarks/gpu.py --tiny --json               # tiny models on the CPU in seconds (what CI runs)
    python benchmarks/gpu.py --backbones modelscope --steps 10
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: (frames, height, width, steps) of each backbone's run
PAPER = {"animatediff": (16, 512, 512, 50), "modelscope": (16, 256, 256, 50), "videocrafter2": (16, 320, 512, 50)}
TINY = {"animatediff": (2, 32, 32, 2), "modelscope": (2, 32, 32, 2), "videocrafter2": (2, 32, 32, 2)}
PROMPT = "Two horses race across a grassy field at sunset."


# -- the model folders ------------------------------------------------------------------------------------------


def _full_folders(root: Path, backbones: list[str], device) -> dict[str, Path]:
    """Full-size random networks, fp16, in the diffusers layouts the backbones read."""
    import torch
    from diffusers import StableDiffusionPipeline, TextToVideoSDPipeline

    from ivmixed.testing import real_models, tiny

    half = torch.float16
    folders: dict[str, Path] = {}

    def build(name):
        torch.manual_seed(0)
        return real_models.build(name, device=device, dtype=half)

    sd = StableDiffusionPipeline(
        vae=build("sd_vae"),
        text_encoder=build("clip_l_text"),
        tokenizer=tiny.tiny_tokenizer(),  # token ids only; the vocabulary is not what is measured
        unet=build("sd15_unet"),
        scheduler=tiny._scheduler("pndm"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    sd.save_pretrained(str(root / "sd15"))
    del sd
    folders["sd15"] = root / "sd15"
    if "animatediff" in backbones:
        build("motion_adapter_v1_5_3").save_pretrained(str(root / "motion_adapter"))
        folders["motion_adapter"] = root / "motion_adapter"
    if {"modelscope", "videocrafter2"} & set(backbones):
        ms = TextToVideoSDPipeline(
            vae=build("sd_vae"),
            text_encoder=build("openclip_h_text"),
            tokenizer=tiny.tiny_tokenizer(),
            unet=build("modelscope_unet"),
            scheduler=tiny._scheduler("ddim"),
        )
        ms.save_pretrained(str(root / "modelscope"))
        del ms
        folders["modelscope"] = root / "modelscope"
    if "videocrafter2" in backbones:
        build("videocrafter2_unet").save_pretrained(str(root / "videocrafter2"))
        folders["videocrafter2"] = root / "videocrafter2"
    gc.collect()
    return folders


def _tiny_folders(root: Path, backbones: list[str]) -> dict[str, Path]:
    from ivmixed.testing import tiny
    from ivmixed.testing.hub_cache import save_videocrafter2_unet

    folders = {"sd15": tiny.save_sd15(root / "sd15", seed=1), "motion_adapter": tiny.save_motion_adapter(root / "motion_adapter", seed=2)}
    folders["modelscope"] = tiny.save_modelscope(root / "modelscope", seed=3)
    if "videocrafter2" in backbones:
        save_videocrafter2_unet(root / "videocrafter2", 4)
        folders["videocrafter2"] = root / "videocrafter2"
    folders["sd15_ms"] = tiny.save_sd15(root / "sd15_ms", seed=5)
    return folders


def _options(name: str, folders: dict[str, Path]) -> dict[str, str]:
    if name == "animatediff":
        return {"model": str(folders["sd15"]), "motion_adapter": str(folders["motion_adapter"]), "image_model": str(folders["sd15"])}
    if name == "modelscope":
        return {"model": str(folders["modelscope"]), "image_model": str(folders.get("sd15_ms", folders["sd15"]))}
    return {"model": str(folders["videocrafter2"]), "components": str(folders["modelscope"]), "image_model": str(folders.get("sd15_ms", folders["sd15"]))}


def _stock(name: str, folders: dict[str, Path], device, dtype):
    """The stock diffusers pipeline doing what ivmixed ``origin`` does."""
    from diffusers import AnimateDiffPipeline, DDIMScheduler, DPMSolverMultistepScheduler, MotionAdapter, TextToVideoSDPipeline
    from diffusers.utils import logging as diffusers_logging

    from ivmixed.backbones.diffusers import DDIM_OVERRIDES, dtype_keyword

    kw = {dtype_keyword(): dtype}
    diffusers_logging.set_verbosity_error()
    if name == "animatediff":
        pipe = AnimateDiffPipeline.from_pretrained(str(folders["sd15"]), motion_adapter=MotionAdapter.from_pretrained(str(folders["motion_adapter"]), **kw), **kw)
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, **DDIM_OVERRIDES)
    elif name == "modelscope":
        pipe = TextToVideoSDPipeline.from_pretrained(str(folders["modelscope"]), **kw)
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, **DDIM_OVERRIDES)
    else:
        from ivmixed_videocrafter2.backbone import DPM_OVERRIDES
        from ivmixed_videocrafter2.unet import VideoCrafter2UNet

        unet = VideoCrafter2UNet.from_pretrained(str(folders["videocrafter2"]), **kw)
        pipe = TextToVideoSDPipeline.from_pretrained(str(folders["modelscope"]), unet=unet, **kw)
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, **DPM_OVERRIDES)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


# -- timing -------------------------------------------------------------------------------------------------------


def _timed(fn, device) -> dict[str, float]:
    import torch

    cuda = device.type == "cuda"
    fn()  # warm-up
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if cuda else None
    return {"wall_s": wall, "peak_memory_bytes": peak}


def measure(name: str, folders: dict[str, Path], setting: tuple[int, int, int, int], device, dtype) -> dict:
    import torch

    import ivmixed

    frames, height, width, steps = setting
    backbone = ivmixed.load(name, device=str(device), dtype={torch.float16: "fp16", torch.float32: "fp32"}[dtype], **_options(name, folders))
    guidance = backbone.defaults.guidance
    ours = dict(frames=frames, height=height, width=width, steps=steps, guidance=guidance, progress=False, decode=False)
    row = {"backbone": name, "frames": frames, "height": height, "width": width, "steps": steps, "guidance": guidance}
    row["origin"] = _timed(lambda: backbone.generate(PROMPT, program="origin", seed=0, **ours), device)
    row["iv_iv"] = _timed(lambda: backbone.generate(PROMPT, program="IV-IV", seed=0, **ours), device)
    del backbone
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    stock = _stock(name, folders, device, dtype)

    def run_stock():
        generator = torch.Generator(device).manual_seed(0)
        return stock(PROMPT, num_frames=frames, height=height, width=width, num_inference_steps=steps,
                     guidance_scale=guidance, generator=generator, output_type="latent").frames

    row["stock_origin"] = _timed(run_stock, device)
    del stock
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    row["origin_over_stock"] = row["origin"]["wall_s"] / row["stock_origin"]["wall_s"]
    row["iv_iv_over_origin"] = row["iv_iv"]["wall_s"] / row["origin"]["wall_s"]
    if device.type == "cuda":
        row["iv_iv_memory_over_origin"] = row["iv_iv"]["peak_memory_bytes"] / row["origin"]["peak_memory_bytes"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random models on the CPU, fp32, 2 frames × 32² × 2 steps (seconds)")
    parser.add_argument("--backbones", default="animatediff,modelscope,videocrafter2")
    parser.add_argument("--steps", type=int, help="override the number of steps of every run")
    parser.add_argument("--frames", type=int, help="override the number of frames of every run")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--folder", type=Path, help="where to write the model folders (default: a temporary folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import torch

    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    unknown = [b for b in backbones if b not in PAPER]
    if unknown:
        parser.error(f"unknown backbone(s) {', '.join(unknown)}; choose from {', '.join(PAPER)}")
    if args.tiny:
        device, dtype = torch.device("cpu"), torch.float32
        torch.set_num_threads(1)
    else:
        if not torch.cuda.is_available():
            print("gpu.py needs a CUDA device (torch sees none); use --tiny for the CPU check", file=sys.stderr)
            return 2
        device, dtype = torch.device(args.device), torch.float16
    settings = TINY if args.tiny else PAPER
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        folders = _tiny_folders(root, backbones) if args.tiny else _full_folders(root, backbones, device)
        build_s = time.perf_counter() - start
        rows = []
        for name in backbones:
            frames, height, width, steps = settings[name]
            setting = (args.frames or frames, height, width, args.steps or steps)
            rows.append(measure(name, folders, setting, device, dtype))
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": {torch.float16: "fp16", torch.float32: "fp32"}[dtype],
        "weights": "tiny random" if args.tiny else "full-size random (published configurations)",
        "build_s": build_s,
        "torch": torch.__version__,
        "runs": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['weights']} weights, {report['dtype']} on {report['device']}; latents only, one warm-up run each")
    print(f"{'backbone':<14} {'F×H×W×N':>16} {'stock s':>9} {'origin s':>9} {'IV-IV s':>9} {'origin/stock':>13} {'IV-IV/origin':>13} {'peak GB (o / IV)':>17}")
    for r in rows:
        peaks = "-" if r["origin"]["peak_memory_bytes"] is None else f"{r['origin']['peak_memory_bytes'] / 1e9:.1f} / {r['iv_iv']['peak_memory_bytes'] / 1e9:.1f}"
        print(f"{r['backbone']:<14} {r['frames']}×{r['height']}×{r['width']}×{r['steps']:>3} {r['stock_origin']['wall_s']:>9.2f} "
              f"{r['origin']['wall_s']:>9.2f} {r['iv_iv']['wall_s']:>9.2f} {r['origin_over_stock']:>13.3f} {r['iv_iv_over_origin']:>13.3f} {peaks:>17}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
