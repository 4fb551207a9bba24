"""Registry entry of the ``toy`` backbone: the analytic video world (exact scores, CPU, no weights).

This module stays free of torch so that ``ivmixed list`` can read the spec without importing anything
heavy; the world itself lives in :mod:`ivmixed.backbones.toyworld` and is imported on first load.
Every option of :class:`~ivmixed.backbones.toyworld.ToyBackbone` is declared in :data:`OPTIONS` (type, range,
default, meaning), so ``-o spread=abc`` is refused before the world is built and ``ivmixed list --options toy``
lists them.
"""

from __future__ import annotations

from ..registry import BackboneSpec, Option

#: the largest clip side and length the options accept (the exact scores hold (H·W)² tables in memory)
MAX_SIDE = 64
MAX_FRAMES = 256

OPTIONS = (
    Option("world", "str", "default", "a named world (default, large-mismatch, learned, compressed; see docs/toy.md); the options below override it"),
    Option("frames", "int", 8, "default frames per clip", min=1, max=MAX_FRAMES),
    Option("height", "int", 16, "default clip height in pixels", min=1, max=MAX_SIDE),
    Option("width", "int", 16, "default clip width in pixels", min=1, max=MAX_SIDE),
    Option("blob_width", "float", 1.0, "std in pixels of the true (IDM) blob", min=0, min_open=True, max=MAX_SIDE),
    Option("contrast", "float", 0.9, "peak of the true blob above (bright) or below (dark) the background", min=0, min_open=True, max=1),
    Option("background", "float", 0.0, "pixel value of the background (pixels live in [-1, 1])", min=-1, max=1),
    Option("spread", "float", 0.05, "per-pixel std of every mixture component (how far real clips stray from the render)", min=0, min_open=True, max=1),
    Option("mismatch", "float", 0.5, "how degraded the VDM's world is: its blob (1 + m)x wider and 1/(1 + m) as bright", min=0, max=10),
    Option("vdm_blob_width", "float", None, "std in pixels of the VDM's blob (none: from mismatch)", min=0, min_open=True, max=MAX_SIDE, none_ok=True),
    Option("vdm_contrast", "float", None, "peak of the VDM's blob (none: from mismatch)", min=0, min_open=True, max=1, none_ok=True),
    Option("speed", "int", 1, "pixels the blob moves per frame", min=1, max=MAX_SIDE),
    Option("beta_start", "float", 1e-4, "first beta of the linear noise table", min=0, max=1, min_open=True, max_open=True),
    Option("beta_end", "float", 0.02, "last beta of the linear noise table", min=0, max=1, min_open=True, max_open=True),
    Option("vdm_spread", "float", None, "per-pixel std the VDM assumes (none: the world's; larger = a smoother VDM, error growing at low noise)", min=0, min_open=True, max=1, none_ok=True),
    Option("idm_bias", "float", None, "strength of the IDM's per-frame preference for some blob positions (0: exact IDM)", min=0, max=100, none_ok=True),
    Option("leak", "float", None, "weight of components the prompt does not allow in the conditional score (0: exact prompt fidelity)", min=0, max=1, none_ok=True),
    Option("temporal_compression", "int", None, "frames averaged into one latent frame after the first (1: none; frames must be 1 + k*n)", min=1, max=MAX_FRAMES, none_ok=True),
    Option("guidance", "float", 7.5, "default guidance scale w of the standard step", min=0, max=100),
    Option("steps", "int", 50, "default number of sampling steps", min=2, max=1000),
    Option("program", "str", "IV-IV", "default sampling program"),
    Option("fps", "float", 4, "frame rate of written videos", min=0, min_open=True, max=240),
    Option("dtype", "str", "float64", "precision of the exact scores", choices=("float64", "fp64", "float32", "fp32")),
    Option("device", "str", "cpu", "cpu, cuda, cuda:1, ..."),
    Option("threads", "int", 1, "torch threads while a score is evaluated (none: leave torch's setting)", min=1, max=1024, none_ok=True),
)

SPEC = BackboneSpec(
    name="toy",
    factory="ivmixed.backbones.toyworld:ToyBackbone",
    summary="analytic video world: a blob moving on a torus, exact scores and metrics, runs on a CPU in seconds",
    roles={
        "vdm": "exact score of a degraded world (blurrier, fainter blobs, same motion), conditioned on appearance and direction",
        "idm": "exact score of the sharp per-frame marginal, conditioned on appearance",
    },
    requires=("torch", "diffusers"),
    size_multiple=1,
    presets=(),
    prompt_check="ivmixed.backbones.toyworld:parse_prompt",
    options=OPTIONS,
    num_train_timesteps=1000,
)
