"""Writes notebooks/03_write_a_plugin.ipynb (run once; the notebook is committed, this script keeps it reviewable)."""

import nbformat as nbf

cells = []
md = lambda s: cells.append(nbf.v4.new_markdown_cell(s.strip()))
code = lambda s: cells.append(nbf.v4.new_code_cell(s.strip()))

md(r"""
# Write a backbone plugin

A backbone is what ivmixed needs to sample with an image model (IDM) and a video model (VDM): two
score models with one calling convention, prompt encoding, the VDM's standard-step scheduler, latent
initialisation and decoding. This notebook writes a complete one in a few lines — a world of
Gaussian clips whose scores are exact — registers it with `register_backbone`, runs programs on it,
checks it against the conformance suite, and shows how to ship it as a package through the
`ivmixed.backbones` entry-point group.
""")

code(r"""
import torch
from diffusers import DDIMScheduler

import ivmixed
from ivmixed.backbones.base import Backbone, Conditioning, Defaults
""")

md(r"""
## 1. The score models

Every role is a callable `eps(x, t, cond)` on video latents `(N, C, F, H, W)`. `cond` is whatever
your `encode` prepares for the doubled classifier-free-guidance batch `[uncond; cond]`.

In this world a clip is a constant brightness `m` per frame plus Gaussian noise of width `sd`; the
image model believes every frame is independent, the video model knows a clip shares one brightness
with a small drift per frame. For a Gaussian data distribution N(μ, σ²) the exact noise prediction at
level t is `eps = s_t (x − a_t μ) / (a_t² σ² + s_t²)` with `a_t = sqrt(ᾱ_t)`, `s_t = sqrt(1 − ᾱ_t)`.
""")

code(r"""
class GaussianScore:
    # exact eps of N(mean, sd²) per pixel; `drift` adds a per-frame ramp (the "motion")
    def __init__(self, alphas_cumprod, sd, drift):
        self.alphas_cumprod, self.sd, self.drift = alphas_cumprod, sd, drift

    def __call__(self, x, t, cond):
        a2 = self.alphas_cumprod[t].to(x.dtype)
        frames = x.shape[2]
        ramp = self.drift * torch.linspace(-1, 1, frames, dtype=x.dtype).view(1, 1, frames, 1, 1)
        mean = cond.view(-1, 1, 1, 1, 1).to(x.dtype) + ramp   # cond: one brightness per batch row
        return (1 - a2).sqrt() * (x - a2.sqrt() * mean) / (a2 * self.sd**2 + 1 - a2)
""")

md(r"""
## 2. The backbone

Subclass `Backbone` and implement `encode`, `make_scheduler`, `initial_latents` and `decode`; set
`defaults` and the two score models. `generate`, the CLI, costs, manifests, the sweep and the batch
runner then work unchanged.
""")

code(r"""
BRIGHTNESS = {"dark": -0.6, "grey": 0.0, "bright": 0.6}


class GaussianClips(Backbone):
    name = "gaussian-clips"
    defaults = Defaults(height=8, width=8, frames=6, steps=25, guidance=1.5, program="IV-IV")
    vae_scale_factor = 1          # pixel space: any size works
    example_prompt = "bright"

    def __init__(self, sd: float = 0.3, drift: float = 0.4):
        self.scheduler_config = dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02, clip_sample=False)
        table = self.make_scheduler().alphas_cumprod
        self.idm = GaussianScore(table, sd, drift=0.0)      # sharp frames, no notion of time
        self.vdm = GaussianScore(table, sd * 1.5, drift)    # knows the drift, blurrier frames

    def encode(self, prompts, negative_prompts):
        unknown = [p for p in prompts + negative_prompts if p and p not in BRIGHTNESS]
        if unknown:
            raise ValueError(f"unknown prompt {unknown[0]!r}; this world knows {sorted(BRIGHTNESS)}")
        cond = torch.tensor([BRIGHTNESS.get(p, 0.0) for p in negative_prompts] + [BRIGHTNESS[p] for p in prompts])
        return Conditioning(idm=cond, vdm=cond, prompts=prompts, negative_prompts=negative_prompts)

    def make_scheduler(self):
        return DDIMScheduler(**self.scheduler_config)

    def initial_latents(self, batch, frames, height, width, generator):
        return torch.randn((batch, 1, frames, height, width), generator=generator)

    def decode(self, latents):
        return ((latents[:, 0].clamp(-1, 1) + 1) / 2).unsqueeze(-1).expand(*latents[:, 0].shape, 3).float().cpu()
""")

md(r"""
## 3. Register it and use it like any other backbone

`register_backbone(name, factory)` makes it available to `ivmixed.load` (and so to everything built on
it) for this Python session. The printed brightness is above the prompt's 0.6 because guidance
extrapolates away from the unconditional mean (0 here) — exactly, since every score in this world is exact;
the zigzags push further along the same direction.
""")

code(r"""
ivmixed.register_backbone("gaussian-clips", GaussianClips, summary="exact Gaussian clips, a plugin example")
backbone = ivmixed.load("gaussian-clips", sd=0.25)

for text in ["origin", "IV-IV", "VV-VV@66.7%", "IV-IV+VV-VV@i%3=2"]:
    video = backbone.generate("bright", program=text, seed=0, zigzag=0.5, progress=False)
    clip = video.latents[0, 0]
    print(f"{text:<20} cost {video.cost}   mean brightness per frame {[round(v, 2) for v in clip.mean(dim=(1, 2)).tolist()]}")
""")

code(r"""
# every registered backbone, built-in, installed or registered here, shows up in the same listing
from ivmixed.commands.list import collect
[(row["name"], row["distribution"]) for row in collect()]
""")

md(r"""
## 4. Check it against the conformance suite

`ivmixed.testing.BackboneContract` is the test suite every backbone passes: loading through the
registry, output shape and dtype, determinism, batch independence, a zigzag differs from `origin`,
cost equals the counted network calls, and unknown options are refused. In your package's tests:

```python
# tests/test_contract.py
from ivmixed.testing import BackboneContract

class TestGaussianClips(BackboneContract):
    name = "gaussian-clips"
    size = dict(frames=3, height=8, width=8, steps=4)
```

(Backbones that load weights also subclass `MissingWeightsContract` and provide a `missing_options`
fixture.) Here we run the same suite in the notebook:
""")

code(r"""
import pytest, pathlib, tempfile, textwrap

test_file = pathlib.Path(tempfile.mkdtemp()) / "test_gaussian_clips.py"
test_file.write_text(textwrap.dedent('''
    import ivmixed
    from ivmixed.testing import BackboneContract
    from __main__ import GaussianClips  # defined in this notebook

    ivmixed.register_backbone("gaussian-clips", GaussianClips)

    class TestGaussianClips(BackboneContract):
        name = "gaussian-clips"
        prompts = ("bright", "dark")
        size = dict(frames=3, height=8, width=8, steps=4)
'''))
exit_code = pytest.main(["-q", "-p", "no:cacheprovider", str(test_file)])
assert exit_code == 0, exit_code
""")

md(r"""
## 5. Ship it as a package

Put the class in a module, describe it with a `BackboneSpec` in a light module (no torch import at
module level, so `ivmixed list` stays fast and a missing dependency shows up as a clear message), and
declare the spec in your `pyproject.toml`:

```toml
[project]
name = "ivmixed-gaussian-clips"
dependencies = ["ivmixed"]

[project.entry-points."ivmixed.backbones"]
gaussian-clips = "ivmixed_gaussian_clips.spec:SPEC"
```

```python
# ivmixed_gaussian_clips/spec.py
from ivmixed.registry import BackboneSpec

SPEC = BackboneSpec(
    name="gaussian-clips",
    factory="ivmixed_gaussian_clips.backbone:GaussianClips",   # imported only when the backbone is loaded
    summary="exact Gaussian clips, a plugin example",
    roles={"idm": "independent Gaussian frames", "vdm": "Gaussian clips with a drift"},
    requires=("torch", "diffusers"),
    size_multiple=1,
)
```

After `pip install -e .` the backbone is listed by `ivmixed list` with your distribution's name and
works everywhere: `ivmixed generate --backbone gaussian-clips --prompt bright --out clip.gif`. The
VideoCrafter2 backbone in `plugins/ivmixed-videocrafter2` is a real plugin built exactly this way.
Below, the same thing without installing anything: a throwaway distribution folder put on `sys.path`.
""")

code(r"""
import sys, importlib

site = pathlib.Path(tempfile.mkdtemp())
(site / "ivmixed_gaussian_clips_demo.py").write_text(textwrap.dedent('''
    from ivmixed.registry import BackboneSpec
    SPEC = BackboneSpec(name="gaussian-clips-pkg", factory="__main__:GaussianClips", summary="from an entry point",
                        requires=("torch",), size_multiple=1)
'''))
info = site / "ivmixed_gaussian_clips_demo-0.1.dist-info"
info.mkdir()
(info / "METADATA").write_text("Metadata-Version: 2.1\nName: ivmixed-gaussian-clips-demo\nVersion: 0.1\n")
(info / "entry_points.txt").write_text("[ivmixed.backbones]\ngaussian-clips-pkg = ivmixed_gaussian_clips_demo:SPEC\n")
sys.path.insert(0, str(site))
importlib.invalidate_caches()

rows = {row["name"]: row for row in collect()}
print(rows["gaussian-clips-pkg"]["distribution"], "->", rows["gaussian-clips-pkg"]["summary"])
video = ivmixed.load("gaussian-clips-pkg").generate("dark", program="IV-IV", seed=1, progress=False)
print(video.cost, video.frames.shape)
""")

nb = nbf.v4.new_notebook()
nb["cells"] = cells
nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, "notebooks/03_write_a_plugin.ipynb")
