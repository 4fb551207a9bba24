"""The analytic video world behind the ``toy`` backbone: exact scores, exact guidance, exact metrics.

The world (SPEC §4; every constant below is a parameter of :class:`ToyWorld`):

* A clip is ``F`` frames of ``H × W`` pixels, one channel, values around ``background`` in [-1, 1]. It shows one
  Gaussian blob (std ``blob_width`` pixels, peak ``±contrast`` above the background: ``bright`` is +, ``dark``
  is −) that moves ``speed`` pixels per frame ``left``, ``right``, ``up`` or ``down`` on a torus.
* The true clip distribution is a Gaussian mixture: one component N(μ_k, τ² I) per rendered trajectory
  k = (appearance a, direction d, start position p), uniform weights, τ = ``spread``.
* **IDM** — the exact ε of the *per-frame marginal* of that world, conditioned on the appearance only: a
  mixture over (a, p) of sharp frames. Perfect frames, no notion of time.
* **VDM** — the exact ε of a *degraded* world: the same trajectories rendered with a wider, fainter blob
  (``vdm_blob_width``, ``vdm_contrast``; by default derived from ``mismatch``), conditioned on appearance
  and direction. Perfect motion, poorer frames.
* Classifier-free guidance is exact: the conditional mixture (components the prompt allows) against the
  mixture over every prompt (or over the negative prompt's components).

ε of a Gaussian mixture under x_t = α x_0 + s z (α = sqrt(ᾱ_t), s = sqrt(1 − ᾱ_t)) is closed form:

    v = α² τ² + s²,   r_k = softmax_k( (α x·μ_k − α² ‖μ_k‖² / 2) / v )   over the allowed components,
    ε(x, t) = s · (x − α Σ_k r_k μ_k) / v.

(The term ‖x‖² is common to every component and dropped, which keeps float32 free of cancellation.)
All components are translates of one template on the torus, so x·μ_k for every start position is one
``index_select`` (the frames shifted back along each direction and summed) and one matmul with the
circulant ``(H·W, H·W)`` bump matrix, and Σ r_k μ_k is the transposed pair: no Python loop over mixture
components anywhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import re
from dataclasses import dataclass
from typing import Any

import torch

from ..guidance import ImageOnVideo
from .diffusers.devices import resolve_device
from .base import Backbone, Conditioning, Defaults

__all__ = [
    "APPEARANCES",
    "DIRECTIONS",
    "FILLER_WORDS",
    "WORLDS",
    "ToyWorld",
    "ToyBackbone",
    "VideoScore",
    "ImageScore",
    "PromptSet",
    "parse_prompt",
    "vocabulary",
    "all_prompts",
    "clip_metrics",
    "compress",
    "distribution_metrics",
    "nearest_trajectories",
    "position_preference",
    "true_samples",
    "render",
    "make_scheduler",
]

#: appearance word -> sign of the blob's peak relative to the background
APPEARANCES: dict[str, float] = {"bright": 1.0, "dark": -1.0}
#: direction word -> (row step, column step) per frame; rows grow downwards
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
#: words a prompt may contain besides appearances and directions; they carry no meaning
FILLER_WORDS = frozenset(
    "a an the one blob ball dot spot moving moves move going goes drifting drifts travelling traveling "
    "that which is to towards toward".split()
)


# ------------------------------------------------------------------------------------------------
# Prompts
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptSet:
    """What a prompt allows: a set of appearances and a set of directions (all of them when unnamed)."""

    appearances: tuple[str, ...]
    directions: tuple[str, ...]

    def mask(self) -> torch.Tensor:
        """``(A, D)`` bool: which (appearance, direction) pairs of the world the prompt allows."""
        a = torch.tensor([name in self.appearances for name in APPEARANCES])
        d = torch.tensor([name in self.directions for name in DIRECTIONS])
        return a[:, None] & d[None, :]


def vocabulary() -> str:
    """The words a toy prompt may use, as one line for error messages and docs."""
    return (
        f"appearances: {', '.join(APPEARANCES)}; directions: {', '.join(DIRECTIONS)}; "
        f"other words: {', '.join(sorted(FILLER_WORDS))}"
    )


def parse_prompt(prompt: str) -> PromptSet:
    """Read a prompt such as ``"a bright blob moving left"`` into the appearances and directions it allows.

    Words are case-insensitive and may be separated by spaces or punctuation. A prompt that names no
    appearance allows both; one that names no direction allows all four; ``""`` is the unconditional prompt.
    Unknown words and prompts naming two appearances (or two directions) raise ``ValueError``.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"a toy prompt is a string, got {type(prompt).__name__}")
    words = [w for w in re.split(r"[^a-z]+", prompt.lower()) if w]
    unknown = [w for w in words if w not in APPEARANCES and w not in DIRECTIONS and w not in FILLER_WORDS]
    if unknown:
        listed = ", ".join(f"'{w}'" for w in dict.fromkeys(unknown))
        raise ValueError(
            f"the toy world does not know the word(s) {listed} in prompt {prompt!r}. "
            f"Its vocabulary is {vocabulary()}. Example: 'a bright blob moving left'."
        )
    appearances = tuple(dict.fromkeys(w for w in words if w in APPEARANCES))
    directions = tuple(dict.fromkeys(w for w in words if w in DIRECTIONS))
    for kind, found in (("appearances", appearances), ("directions", directions)):
        if len(found) > 1:
            raise ValueError(f"prompt {prompt!r} names two {kind} ({' and '.join(found)}); a toy clip has one of each")
    return PromptSet(appearances or tuple(APPEARANCES), directions or tuple(DIRECTIONS))


def all_prompts() -> list[str]:
    """One prompt per (appearance, direction) pair, e.g. ``"a bright blob moving left"``."""
    return [f"a {a} blob moving {d}" for a in APPEARANCES for d in DIRECTIONS]


# ------------------------------------------------------------------------------------------------
# The noise schedule
# ------------------------------------------------------------------------------------------------


def make_scheduler(beta_start: float = 1e-4, beta_end: float = 0.02, num_train_timesteps: int = 1000):
    """The standard-step scheduler of the toy world: DDIM on the pixel-space DDPM table.

    Linear β from 1e-4 to 0.02 over T = 1000 is the table Ho et al. (2020) trained pixel-space models in
    [-1, 1] with: ᾱ_999 ≈ 4e-5, so the first step starts from pure noise. ``timestep_spacing="trailing"``
    starts the grid at t = 999 and ends it at t = T//N − 1, whose DDIM step lands on ᾱ = 1
    (``set_alpha_to_one``), i.e. exactly on the data; ``clip_sample`` is off so no score is altered.
    It is :class:`ivmixed.backbones._ddim.DDIM`, which equals ``diffusers.DDIMScheduler`` with that configuration
    bit for bit without importing diffusers (seconds of start-up for a world that samples in a fraction of one).
    """
    from ._ddim import DDIM

    return DDIM(num_train_timesteps, beta_start, beta_end, set_alpha_to_one=True, timestep_spacing="trailing")


# ------------------------------------------------------------------------------------------------
# The world
# ------------------------------------------------------------------------------------------------

#: named worlds; ``ToyWorld.named(name, **overrides)``. Mismatch is two numbers, the VDM's blob width (blur)
#: and its contrast; ``default`` and ``large-mismatch`` derive both from the one ``mismatch`` knob.
WORLDS: dict[str, dict[str, Any]] = {
    # (the exact-model worlds first; ``compressed`` is ``learned`` seen through a Wan-style video VAE)
    # exact models, mild mismatch: the VDM's blob is 1.5× wider (1.5 px) and 2/3 as bright (0.6)
    "default": {"mismatch": 0.5},
    # exact models, large mismatch: the VDM's blob is 2× wider (2 px) and half as bright (0.45)
    "large-mismatch": {"mismatch": 1.0},
    # imperfect models, the errors of learned networks: the default world's blur and contrast, a VDM that
    # smooths fine detail (it assumes twice the spread), an IDM that prefers some positions in every frame,
    # and prompts that the conditional scores only partly separate (so that guidance matters)
    "learned": {"vdm_blob_width": 1.5, "vdm_contrast": 0.6, "vdm_spread": 0.1, "idm_bias": 1.0, "leak": 0.25},
    # the learned world with temporal compression 4 (Wan 2.1's VAE): 17 frames in 5 latent frames
    "compressed": {"vdm_blob_width": 1.5, "vdm_contrast": 0.6, "vdm_spread": 0.1, "idm_bias": 1.0, "leak": 0.25,
                   "temporal_compression": 4, "frames": 17},
}


@dataclass(frozen=True)
class ToyWorld:
    """The parameters of the analytic video world (see the module docstring and docs/toy.md).

    Args:
        frames, height, width: default clip size (any size can be asked for per call; the templates are
            built per size and cached).
        blob_width: std, in pixels, of the true (IDM) Gaussian blob.
        contrast: peak of the true blob above (bright) or below (dark) the background.
        background: pixel value of the background (0 is mid-grey).
        spread: τ, the per-pixel std of every mixture component (how far real clips stray from the render).
        mismatch: m ≥ 0, how degraded the VDM's world is: its blob is (1 + m)× wider and 1/(1 + m) as bright.
        vdm_blob_width, vdm_contrast: set the VDM's blob directly (None: derived from ``mismatch``).
        speed: pixels the blob moves per frame.
        beta_start, beta_end: the linear β table of the noise schedule (see :func:`make_scheduler`).
        vdm_spread: the τ the VDM's score assumes (None: ``spread``, exact). A larger value is a VDM that
            smooths fine detail: its score error is negligible at high noise and grows as the noise falls.
        idm_bias: σ_b ≥ 0, the IDM's per-frame error: its prior over blob positions has log-weights σ_b·g(p)
            with g a fixed standard-normal field over the pixels (0: uniform, exact). Each frame is pulled
            towards the positions it prefers independently of the others.
        leak: λ in [0, 1], limited prompt fidelity: both conditional scores give the components the prompt
            does not allow weight λ instead of 0 (0: exact; 1: the prompt is ignored), so classifier-free
            guidance is what separates the prompts.
        temporal_compression: k ≥ 1, frames per latent frame, as a video VAE packs them: the first frame stays
            alone and every later group of k frames is averaged into one latent frame, so F = 1 + k·n frames
            make 1 + n latent frames (Wan 2.1: k = 4). The true world, the VDM and the metrics live in that
            latent space (a clip's latents are its compressed frames plus N(0, τ²) noise); the IDM stays the
            score of single sharp frames, so it sees every compressed frame as if it were one.
    """

    frames: int = 8
    height: int = 16
    width: int = 16
    blob_width: float = 1.0
    contrast: float = 0.9
    background: float = 0.0
    spread: float = 0.05
    mismatch: float = 0.5
    vdm_blob_width: float | None = None
    vdm_contrast: float | None = None
    speed: int = 1
    beta_start: float = 1e-4
    beta_end: float = 0.02
    vdm_spread: float | None = None
    idm_bias: float = 0.0
    leak: float = 0.0
    temporal_compression: int = 1

    def __post_init__(self):
        for name in ("frames", "height", "width", "speed", "temporal_compression"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"toy world: {name} must be an integer >= 1, got {value!r}")
        for name in ("blob_width", "spread"):
            if not getattr(self, name) > 0:
                raise ValueError(f"toy world: {name} must be > 0, got {getattr(self, name)!r}")
        if not self.mismatch >= 0:
            raise ValueError(f"toy world: mismatch must be >= 0, got {self.mismatch!r}")
        if self.vdm_blob_width is not None and not self.vdm_blob_width > 0:
            raise ValueError(f"toy world: vdm_blob_width must be > 0, got {self.vdm_blob_width!r}")
        if self.vdm_spread is not None and not self.vdm_spread > 0:
            raise ValueError(f"toy world: vdm_spread must be > 0, got {self.vdm_spread!r}")
        if not self.idm_bias >= 0:
            raise ValueError(f"toy world: idm_bias must be >= 0, got {self.idm_bias!r}")
        if not 0 <= self.leak <= 1:
            raise ValueError(f"toy world: leak must be between 0 and 1, got {self.leak!r}")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError(f"toy world: need 0 < beta_start < beta_end < 1, got {self.beta_start}, {self.beta_end}")
        self.latent_frames(self.frames)

    def latent_frames(self, frames: int) -> int:
        """Latent frames of an ``frames``-frame clip: ``frames`` itself, or 1 + (frames − 1)/k with compression k."""
        k = self.temporal_compression
        if k == 1:
            return frames
        if (frames - 1) % k:
            n = (frames - 1) // k
            raise ValueError(
                f"toy world: with temporal_compression {k} a clip has 1 + {k}·n frames (the first alone, then groups of {k}); "
                f"{frames} frames is not of that form: use {1 + k * n} or {1 + k * (n + 1)} (e.g. --frames {1 + k * (n + 1)})"
            )
        return 1 + (frames - 1) // k

    def pixel_frames(self, latent_frames: int) -> int:
        """Frames of a clip whose latents have ``latent_frames`` frames (the inverse of :meth:`latent_frames`)."""
        return 1 + self.temporal_compression * (latent_frames - 1)

    @classmethod
    def named(cls, world: str = "default", **overrides) -> "ToyWorld":
        """A named world (``"default"``, ``"large-mismatch"``, ``"learned"``) with some parameters overridden.

        Overriding ``mismatch`` alone also drops the named world's ``vdm_blob_width``/``vdm_contrast``, so
        that the one knob is not silently outweighed by the world's two numbers.
        """
        if world not in WORLDS:
            raise ValueError(f"unknown toy world {world!r}; named worlds: {', '.join(WORLDS)}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(f"toy world has no parameter(s) {', '.join(unknown)}; its parameters: {', '.join(sorted(fields))}")
        given = {k: v for k, v in overrides.items() if v is not None}
        base = dict(WORLDS[world])
        if "mismatch" in given:
            for key in ("vdm_blob_width", "vdm_contrast"):
                if key not in given:
                    base.pop(key, None)
        return cls(**{**base, **given})

    @property
    def idm_blob(self) -> tuple[float, float]:
        """(width, contrast) of the true blob, which the IDM and the metrics use."""
        return float(self.blob_width), float(self.contrast)

    @property
    def vdm_blob(self) -> tuple[float, float]:
        """(width, contrast) of the VDM's degraded blob."""
        width = self.vdm_blob_width if self.vdm_blob_width is not None else self.blob_width * (1 + self.mismatch)
        contrast = self.vdm_contrast if self.vdm_contrast is not None else self.contrast / (1 + self.mismatch)
        return float(width), float(contrast)

    @property
    def is_exact(self) -> bool:
        """True when both models are exact scores of their worlds (no imperfect-model knob is set)."""
        return self.vdm_spread in (None, self.spread) and self.idm_bias == 0 and self.leak == 0

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["vdm_blob_width"], out["vdm_contrast"] = (round(v, 6) for v in self.vdm_blob)
        out["vdm_spread"] = self.spread if self.vdm_spread is None else self.vdm_spread
        return out


# ------------------------------------------------------------------------------------------------
# Geometry: templates and trajectories of one clip size, vectorised
# ------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _bump_matrix(height: int, width: int, blob_width: float, dtype, device) -> torch.Tensor:
    """``B[p, q]`` = unit-peak Gaussian bump centred at pixel p, evaluated at pixel q, on the torus (symmetric).

    Cached: callers only read it.
    """
    rows = torch.arange(height, dtype=torch.float64)
    cols = torch.arange(width, dtype=torch.float64)
    dr = (rows[:, None] - rows[None, :]).abs()
    dr = torch.minimum(dr, height - dr)  # torus distance
    dc = (cols[:, None] - cols[None, :]).abs()
    dc = torch.minimum(dc, width - dc)
    d2 = dr[:, None, :, None] ** 2 + dc[None, :, None, :] ** 2  # (pr, pc, qr, qc)
    bump = torch.exp(-d2 / (2 * blob_width**2))
    return bump.reshape(height * width, height * width).to(device=device, dtype=dtype)


@dataclass
class _Geometry:
    """Index tables of one clip size: where the blob of trajectory (d, p0) is at frame f, and back.

    With B the circulant bump matrix and y_f the frames, translation invariance on the torus gives
    x·U_(d,p0) = (Σ_f y_f[p0 + f·d]) @ B and (Σ_(d,p0) w_(d,p0) U_(d,p0))_f = Σ_d (w_d @ B)[q − f·d]; the two
    flat index tables below are those shifts, so each is one ``index_select``.
    """

    frames: int
    height: int
    width: int
    traj: torch.Tensor  # (F, D·P) long: pixel of trajectory (d, p0) at frame f
    align: torch.Tensor  # (D·F·P,) long: index into y (F·P) of pixel p0 + f·d of frame f
    place: torch.Tensor  # (D·F·P,) long: index into w (D·P) of start q − f·d of direction d

    @classmethod
    def build(cls, frames: int, height: int, width: int, speed: int, device) -> "_Geometry":
        pixels = height * width
        p = torch.arange(pixels)
        r0, c0 = p // width, p % width
        f = torch.arange(frames)
        moves = torch.tensor(list(DIRECTIONS.values()))  # (D, 2)
        dr = moves[:, 0][:, None, None] * speed * f[None, :, None]  # (D, F, 1)
        dc = moves[:, 1][:, None, None] * speed * f[None, :, None]
        at = ((r0[None, None] + dr) % height) * width + (c0[None, None] + dc) % width  # (D, F, P): pixel at frame f
        back = ((r0[None, None] - dr) % height) * width + (c0[None, None] - dc) % width  # (D, F, P): start p0
        traj = at.permute(1, 0, 2).reshape(frames, -1)  # (F, D·P)
        align = (f[None, :, None] * pixels + at).reshape(-1)
        place = (torch.arange(len(DIRECTIONS))[:, None, None] * pixels + back).reshape(-1)
        return cls(frames, height, width, traj.to(device), align.to(device), place.to(device))


# ------------------------------------------------------------------------------------------------
# Exact scores
# ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _intra_op_threads(threads: int | None):
    """Run torch with ``threads`` intra-op threads inside the block (None: leave the setting alone)."""
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis that sets weights below ~1e-250 (float64) / ~1e-25 (float32) to exactly 0.

    Such weights change no result at this precision, but as subnormal numbers they slow every later matmul
    on a CPU by orders of magnitude.
    """
    cutoff = math.log(torch.finfo(logits.dtype).tiny) + 30.0
    shifted = logits - logits.amax(-1, keepdim=True)
    weights = shifted.masked_fill(shifted < cutoff, float("-inf")).exp()
    return weights / weights.sum(-1, keepdim=True)


def position_preference(height: int, width: int) -> torch.Tensor:
    """g(p): the fixed standard-normal field over the pixels behind ``idm_bias`` (float64, ``(H·W,)``, seed 0)."""
    generator = torch.Generator("cpu").manual_seed(0)
    return torch.randn(height * width, generator=generator, dtype=torch.float64)


class _MixtureScore:
    """Shared parts of the two score models: the ᾱ table, the blob, the spread, dtype and device."""

    def __init__(self, world: ToyWorld, blob: tuple[float, float], alphas_cumprod: torch.Tensor, dtype, device, threads=None,
                 spread: float | None = None):
        self.world = world
        self.spread = float(world.spread if spread is None else spread)
        self.threads = threads
        self.blob_width, self.contrast = blob
        self.dtype, self.device = dtype, device
        self.alphas_cumprod = alphas_cumprod.to(device=device, dtype=torch.float64)
        self.signs = torch.tensor(list(APPEARANCES.values()), dtype=dtype, device=device)  # (A,)
        self._cache: dict[tuple, Any] = {}

    def bumps(self, height: int, width: int) -> torch.Tensor:
        """The circulant bump matrix of this model's blob for one frame size (built once)."""
        key = ("bumps", height, width)
        if key not in self._cache:
            self._cache[key] = _bump_matrix(height, width, self.blob_width, self.dtype, self.device)
        return self._cache[key]

    def levels(self, t: int) -> tuple[float, float, float]:
        """α = sqrt(ᾱ_t), s = sqrt(1 − ᾱ_t) and v = α² τ² + s² at integer level t (t < 0: ᾱ = 1); τ: this model's spread."""
        abar = 1.0 if t < 0 else float(self.alphas_cumprod[int(t)])
        alpha, s = math.sqrt(abar), math.sqrt(max(0.0, 1.0 - abar))
        return alpha, s, abar * self.spread**2 + (1.0 - abar)

    def __call__(self, x: torch.Tensor, t: int, cond: torch.Tensor) -> torch.Tensor:
        with _intra_op_threads(self.threads):
            return self._eps(x, t, cond)

    def _eps(self, x: torch.Tensor, t: int, cond: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _prompted(self, logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """Logits restricted to the allowed components: −∞ elsewhere, or + log λ with prompt leak λ > 0."""
        leak = self.world.leak
        if leak == 0:
            return logits.masked_fill(~allowed, float("-inf"))
        if leak == 1:
            return logits
        return logits + (~allowed).to(logits.dtype) * math.log(leak)

    def _logits(self, corr: torch.Tensor, alpha: float, v: float, norm2: float) -> torch.Tensor:
        """(α x·μ − α² ‖μ‖² / 2) / v per appearance: ``corr`` (R, …) → (R, A, …); μ = background + sign·contrast·U."""
        amp = (self.signs * self.contrast).reshape(1, -1, *([1] * (corr.dim() - 1)))
        return (alpha * amp * corr.unsqueeze(1) - 0.5 * alpha**2 * amp**2 * norm2) / v


class VideoScore(_MixtureScore):
    """Exact ε of the VDM's world: a mixture over (appearance, direction, start) of degraded trajectories.

    ``cond``: ``(R, A, D)`` bool, the (appearance, direction) pairs each of the R rows allows.
    """

    def __init__(self, world: ToyWorld, alphas_cumprod: torch.Tensor, dtype, device, threads=None):
        super().__init__(world, world.vdm_blob, alphas_cumprod, dtype, device, threads, spread=world.vdm_spread)

    def geometry(self, frames: int, height: int, width: int) -> _Geometry:
        """The trajectory index tables of one clip size (built once)."""
        key = ("geometry", frames, height, width)
        if key not in self._cache:
            self._cache[key] = _Geometry.build(frames, height, width, self.world.speed, self.device)
        return self._cache[key]

    def _eps(self, x: torch.Tensor, t: int, cond: torch.Tensor) -> torch.Tensor:
        if self.world.temporal_compression > 1:
            return self._eps_compressed(x, t, cond)
        n, c, f, h, w = x.shape
        geo, bumps = self.geometry(f, h, w), self.bumps(h, w)
        alpha, s, v = self.levels(t)
        xx = x.to(self.dtype)
        y = (xx - alpha * self.world.background).reshape(n * c, f, h * w)  # (R, F, P)
        rows, pixels, num_dirs = y.shape[0], h * w, len(DIRECTIONS)
        # 1. x·U_(d,p0) for every trajectory: frames shifted back along each direction, summed, blurred
        aligned = y.reshape(rows, f * pixels).index_select(1, geo.align).reshape(rows, num_dirs, f, pixels).sum(2)
        corr = aligned @ bumps  # (R, D, P)
        norm2 = f * float(bumps[0] @ bumps[0])  # ‖U‖², the same for every trajectory on a torus
        logits = self._logits(corr, alpha, v, norm2)  # (R, A, D, P)
        allowed = cond.to(self.device).repeat_interleave(c, 0)[..., None]  # (R, A, D, 1)
        r = _softmax(self._prompted(logits, allowed).reshape(rows, -1)).reshape(logits.shape)
        # 2. Σ_k r_k μ_k: per-trajectory weights (signed by appearance), blurred, placed along the trajectories
        weight = (r * (self.signs * self.contrast)[None, :, None, None]).sum(1)  # (R, D, P)
        blurred = (weight @ bumps).reshape(rows, num_dirs * pixels)
        mean = blurred.index_select(1, geo.place).reshape(rows, num_dirs, f, pixels).sum(1) + self.world.background
        eps = s * (xx.reshape(rows, f, h * w) - alpha * mean) / v
        return eps.reshape(n, c, f, h, w).to(x.dtype)

    def _eps_compressed(self, x: torch.Tensor, t: int, cond: torch.Tensor) -> torch.Tensor:
        """The same mixture over compressed trajectories, with every template explicit: ``(A·D·P, L·P)`` matmuls."""
        n, c, lat, h, w = x.shape
        templates = _templates(self.world, lat, h, w, True, self.dtype, self.device)  # (A, D, P, L·P), signed
        alpha, s, v = self.levels(t)
        xx = x.to(self.dtype)
        y = (xx - alpha * self.world.background).reshape(n * c, -1)  # (R, L·P)
        flat = templates.reshape(-1, y.shape[1])  # (K, L·P)
        key = ("norms", lat, h, w)
        if key not in self._cache:
            self._cache[key] = (flat**2).sum(-1)[None]
        logits = ((alpha * (y @ flat.T) - 0.5 * alpha**2 * self._cache[key]) / v).reshape(-1, *templates.shape[:3])
        allowed = cond.to(self.device).repeat_interleave(c, 0)[..., None]  # (R, A, D, 1)
        r = _softmax(self._prompted(logits, allowed).reshape(y.shape[0], -1))  # (R, K)
        mean = r @ flat + self.world.background
        eps = s * (xx.reshape(y.shape) - alpha * mean) / v
        return eps.reshape(n, c, lat, h, w).to(x.dtype)


class ImageScore(_MixtureScore):
    """Exact ε of the true per-frame marginal: a mixture over (appearance, position) of sharp frames.

    With ``idm_bias`` σ_b > 0 the positions get prior log-weights σ_b·g(p) (:func:`position_preference`),
    the same for every frame; with ``leak`` the prompt only partly separates the appearances.

    Called on images ``(R, C, H, W)`` (wrap with :class:`~ivmixed.guidance.ImageOnVideo` for video latents);
    ``cond``: ``(R', A)`` bool with R a multiple of R' (one row per clip is repeated over its frames).
    """

    def __init__(self, world: ToyWorld, alphas_cumprod: torch.Tensor, dtype, device, threads=None):
        super().__init__(world, world.idm_blob, alphas_cumprod, dtype, device, threads)

    def _eps(self, images: torch.Tensor, t: int, cond: torch.Tensor) -> torch.Tensor:
        n, c, h, w = images.shape
        bumps = self.bumps(h, w)
        alpha, s, v = self.levels(t)
        xx = images.to(self.dtype)
        y = (xx - alpha * self.world.background).reshape(n * c, h * w)
        rows = y.shape[0]
        corr = y @ bumps  # (R, P)
        logits = self._logits(corr, alpha, v, float(bumps[0] @ bumps[0]))  # (R, A, P)
        if self.world.idm_bias:
            key = ("preference", h, w)
            if key not in self._cache:
                self._cache[key] = (self.world.idm_bias * position_preference(h, w)).to(self.device, self.dtype)
            logits = logits + self._cache[key]
        cond = cond.to(self.device)
        if n % cond.shape[0]:
            raise ValueError(f"image conditioning has {cond.shape[0]} rows for {n} images")
        allowed = cond.repeat_interleave(n // cond.shape[0], 0).repeat_interleave(c, 0)[..., None]  # (R, A, 1)
        r = _softmax(self._prompted(logits, allowed).reshape(rows, -1)).reshape(logits.shape)
        weight = (r * (self.signs * self.contrast)[None, :, None]).sum(1)  # (R, P)
        mean = weight @ bumps + self.world.background
        eps = s * (xx.reshape(rows, h * w) - alpha * mean) / v
        return eps.reshape(n, c, h, w).to(images.dtype)


# ------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------


def _groups(world: ToyWorld, latent_frames: int) -> list[list[int]]:
    """The frames averaged into each latent frame: [0], [1..k], [k+1..2k], …"""
    k = world.temporal_compression
    return [[0]] + [list(range(1 + j * k, 1 + (j + 1) * k)) for j in range(latent_frames - 1)]


def compress(world: ToyWorld, clips: torch.Tensor) -> torch.Tensor:
    """Frames ``(B, C, F, H, W)`` -> latents ``(B, C, L, H, W)``: the first frame, then every group of k frames averaged."""
    if world.temporal_compression == 1:
        return clips
    latent = world.latent_frames(clips.shape[2])
    return torch.stack([clips[:, :, g].mean(2) for g in _groups(world, latent)], 2)


@functools.lru_cache(maxsize=16)
def _templates(world: ToyWorld, latent_frames: int, height: int, width: int, degraded: bool, dtype, device) -> torch.Tensor:
    """Every noise-free compressed trajectory, ``(A, D, P, L·P)`` without the background (compression only).

    Frame f of trajectory (a, d, p0) is ``sign_a·contrast·B[p0 + f·d]``; the latent frames are group means.
    """
    f = world.pixel_frames(latent_frames)
    blob_width, contrast = world.vdm_blob if degraded else world.idm_blob
    bumps = _bump_matrix(height, width, blob_width, torch.float64, "cpu")
    geo = _Geometry.build(f, height, width, world.speed, "cpu")
    pixels, dirs = height * width, len(DIRECTIONS)
    frames = bumps[geo.traj]  # (F, D·P, P)
    latent = torch.stack([frames[g].mean(0) for g in _groups(world, latent_frames)], 0)  # (L, D·P, P)
    latent = latent.reshape(latent_frames, dirs, pixels, pixels).permute(1, 2, 0, 3).reshape(dirs, pixels, latent_frames * pixels)
    amp = torch.tensor(list(APPEARANCES.values()), dtype=torch.float64) * contrast
    return (amp[:, None, None, None] * latent[None]).to(device=device, dtype=dtype)


def _compressed_metrics(world: ToyWorld, x: torch.Tensor, allowed: torch.Tensor) -> dict[str, torch.Tensor]:
    """:func:`clip_metrics` in the latent space of a compressed world, against every compressed true trajectory."""
    b, _, lat, h, w = x.shape
    pixels, dirs, apps = h * w, len(DIRECTIONS), len(APPEARANCES)
    t = _templates(world, lat, h, w, False, torch.float64, "cpu")  # (A, D, P0, L·P)
    y = (x - world.background).reshape(b, lat * pixels)
    frames_t = t.reshape(apps * dirs * pixels, lat, pixels)  # (K, L, P)
    # per latent frame: the nearest compressed true frame of a prompted appearance (any direction and position)
    yf = y.reshape(b, lat, pixels)
    d2 = (yf**2).sum(-1)[:, :, None] - 2 * torch.einsum("blp,klp->blk", yf, frames_t) + (frames_t**2).sum(-1).T[None]
    app_ok = allowed.any(2)[:, :, None, None].expand(b, apps, dirs, pixels).reshape(b, 1, -1)  # (B, 1, K)
    best, where = d2.masked_fill(~app_ok, float("inf")).min(-1)  # (B, L)
    frame_error = (best.clamp_min(0) / pixels).sqrt().mean(1)
    if lat > 1:
        # the blob's position in a latent frame is the centre of its streak (a streak and its reverse are the same
        # frame), in doubled pixel units so that it stays an integer; consecutive latent frames must move by the
        # distance between their groups' mean frames times ``speed`` along a prompted direction
        direction, start = (where // pixels) % dirs, where % pixels
        groups = _groups(world, lat)
        mid2 = torch.tensor([2 * g[0] + len(g) - 1 for g in groups])  # twice each group's mean frame
        moves = torch.tensor(list(DIRECTIONS.values()))  # (D, 2)
        step = moves[direction] * world.speed * mid2[None, :, None]  # (B, L, 2)
        rows = (2 * (start // w) + step[..., 0]) % (2 * h)
        cols = (2 * (start % w) + step[..., 1]) % (2 * w)
        gap = (mid2[1:] - mid2[:-1]) * world.speed  # (L-1,)
        d_r, d_c = (rows[:, 1:] - rows[:, :-1]) % (2 * h), (cols[:, 1:] - cols[:, :-1]) % (2 * w)
        hit = (d_r[..., None] == (moves[:, 0][None, None] * gap[None, :, None]) % (2 * h)) & (
            d_c[..., None] == (moves[:, 1][None, None] * gap[None, :, None]) % (2 * w))  # (B, L-1, D)
        coherence = (hit & allowed.any(1)[:, None, :]).any(-1).to(torch.float64).mean(1)
    else:
        coherence = torch.full((b,), float("nan"), dtype=torch.float64)
    flat_t = t.reshape(-1, lat * pixels)
    clip_d2 = (y**2).sum(-1)[:, None] - 2 * y @ flat_t.T + (flat_t**2).sum(-1)[None]  # (B, K)
    prompted = allowed[..., None].expand(-1, -1, -1, pixels).reshape(b, -1)
    video_error = (clip_d2.masked_fill(~prompted, float("inf")).min(1).values.clamp_min(0) / (lat * pixels)).sqrt()
    prompt_accuracy = prompted.gather(1, clip_d2.argmin(1)[:, None]).squeeze(1).to(torch.float64)
    return {"frame_error": frame_error, "coherence": coherence, "video_error": video_error, "prompt_accuracy": prompt_accuracy}


def clip_metrics(world: ToyWorld, clips: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
    """The four toy metrics of every clip, against the *true* (sharp) world.

    ``clips``: ``(B, 1, F, H, W)`` finished latents (pixel values); ``prompts``: one per clip. Returns float64
    tensors of shape (B,):

    * ``frame_error`` — per frame, the RMS pixel distance to the nearest sharp frame of a prompted appearance
      (any position), averaged over the frames;
    * ``coherence`` — the fraction of consecutive frame pairs in which the blob (the position of that nearest
      sharp frame) moved by exactly one prompted step (``speed`` pixels in a prompted direction); NaN for F = 1;
    * ``video_error`` — the RMS pixel distance of the clip to the nearest true clip of the prompt;
    * ``prompt_accuracy`` — 1 when the nearest true clip among *all* prompts has a prompted appearance and
      direction, else 0.

    A clip drawn from the true world itself scores about ``spread`` on both errors (slightly less, because
    the nearest template is chosen), coherence 1 and prompt accuracy 1.

    With temporal compression k the clips are latents and every measure is taken in latent space against the
    compressed true world: a latent frame against the nearest compressed true frame (a streak of k blobs), the
    blob's position is the centre of that streak, and consecutive latent frames must move by the number of
    frames between their groups' mean frames ((k + 1)/2, then k) times ``speed``.
    """
    x = clips.detach().to("cpu", torch.float64)
    b, c, f, h, w = x.shape
    if c != 1:
        raise ValueError(f"toy clips have one channel, got {c}")
    if len(prompts) != b:
        raise ValueError(f"got {len(prompts)} prompts for {b} clips")
    sets = [parse_prompt(p) for p in prompts]
    allowed = torch.stack([s.mask() for s in sets])  # (B, A, D)
    if world.temporal_compression > 1:
        return _compressed_metrics(world, x, allowed)
    bumps = _bump_matrix(h, w, world.blob_width, torch.float64, "cpu")
    geo = _Geometry.build(f, h, w, world.speed, "cpu")
    amp = torch.tensor(list(APPEARANCES.values()), dtype=torch.float64) * world.contrast  # (A,)
    y = (x - world.background).reshape(b, f, h * w)
    b2 = float(bumps[0] @ bumps[0])
    pixels = h * w

    # per frame: ‖y_f − amp_a b_p‖² for every (a, p)
    corr_frames = y @ bumps  # (B, F, P)
    frame_d2 = (y**2).sum(-1)[:, :, None, None] - 2 * amp[None, None, :, None] * corr_frames[:, :, None] + amp[None, None, :, None] ** 2 * b2
    app_ok = allowed.any(2)  # (B, A)
    frame_d2 = frame_d2.masked_fill(~app_ok[:, None, :, None], float("inf"))  # (B, F, A, P)
    best, where = frame_d2.reshape(b, f, -1).min(-1)
    frame_error = (best.clamp_min(0) / pixels).sqrt().mean(1)
    position = where % pixels  # (B, F)

    # coherence: the step between consecutive positions is one of the prompted moves
    if f > 1:
        rows, cols = position // w, position % w
        d_r = (rows[:, 1:] - rows[:, :-1]) % h  # (B, F-1)
        d_c = (cols[:, 1:] - cols[:, :-1]) % w
        moves = torch.tensor(list(DIRECTIONS.values())) * world.speed  # (D, 2)
        hit = (d_r[..., None] == moves[:, 0] % h) & (d_c[..., None] == moves[:, 1] % w)  # (B, F-1, D)
        dir_ok = allowed.any(1)  # (B, D)
        coherence = (hit & dir_ok[:, None, :]).any(-1).to(torch.float64).mean(1)
    else:
        coherence = torch.full((b,), float("nan"), dtype=torch.float64)

    flat, prompted = _trajectory_distances(y, corr_frames, allowed, amp, geo, b2)
    video_error = (flat.masked_fill(~prompted, float("inf")).min(1).values.clamp_min(0) / (f * pixels)).sqrt()
    nearest = flat.argmin(1)
    prompt_accuracy = prompted.gather(1, nearest[:, None]).squeeze(1).to(torch.float64)
    return {
        "frame_error": frame_error,
        "coherence": coherence,
        "video_error": video_error,
        "prompt_accuracy": prompt_accuracy,
    }


def _trajectory_distances(y, corr_frames, allowed, amp, geo, b2):
    """‖y − amp_a U_(d,p0)‖² for every trajectory, flat ``(B, A·D·P)``, and the mask of the prompted ones."""
    b, f, pixels = y.shape
    corr = corr_frames.gather(2, geo.traj.expand(b, -1, -1)).sum(1).reshape(b, len(DIRECTIONS), pixels)  # (B, D, P)
    clip_d2 = (y**2).sum((1, 2))[:, None, None, None] - 2 * amp[None, :, None, None] * corr[:, None] + amp[None, :, None, None] ** 2 * (f * b2)
    flat = clip_d2.reshape(b, -1)  # (B, A·D·P)
    prompted = allowed[..., None].expand(-1, -1, -1, pixels).reshape(b, -1)
    return flat, prompted


def nearest_trajectories(world: ToyWorld, clips: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """``(B, 3)`` long: (appearance, direction, start pixel) of the true trajectory of a prompted pair nearest each clip."""
    x = clips.detach().to("cpu", torch.float64)
    b, c, f, h, w = x.shape
    if c != 1:
        raise ValueError(f"toy clips have one channel, got {c}")
    allowed = torch.stack([parse_prompt(p).mask() for p in prompts])
    if world.temporal_compression > 1:
        t = _templates(world, f, h, w, False, torch.float64, "cpu").reshape(-1, f * h * w)
        y = (x - world.background).reshape(b, -1)
        flat = (y**2).sum(-1)[:, None] - 2 * y @ t.T + (t**2).sum(-1)[None]
        prompted = allowed[..., None].expand(-1, -1, -1, h * w).reshape(b, -1)
    else:
        bumps = _bump_matrix(h, w, world.blob_width, torch.float64, "cpu")
        geo = _Geometry.build(f, h, w, world.speed, "cpu")
        amp = torch.tensor(list(APPEARANCES.values()), dtype=torch.float64) * world.contrast
        y = (x - world.background).reshape(b, f, h * w)
        flat, prompted = _trajectory_distances(y, y @ bumps, allowed, amp, geo, float(bumps[0] @ bumps[0]))
    k = flat.masked_fill(~prompted, float("inf")).argmin(1)
    pixels, dirs = h * w, len(DIRECTIONS)
    return torch.stack([k // (dirs * pixels), (k // pixels) % dirs, k % pixels], 1)


def true_samples(world: ToyWorld, prompts: list[str], generator: torch.Generator, *, frames: int | None = None,
                 height: int | None = None, width: int | None = None) -> torch.Tensor:
    """Exact samples ``(B, 1, F, H, W)`` (float64) of the true world, one per prompt.

    Each draws a component uniformly among those the prompt allows (an allowed appearance and direction, a start
    pixel) and adds N(0, τ²) noise per pixel: what a perfect sampler would return. With temporal compression the
    samples are latents ``(B, 1, L, H, W)`` (``frames`` counts the clip's frames) and the noise is added to them.
    """
    f, h, w = frames or world.frames, height or world.height, width or world.width
    lat = world.latent_frames(f)
    pixels = h * w
    bumps = _bump_matrix(h, w, world.blob_width, torch.float64, "cpu")
    geo = _Geometry.build(f, h, w, world.speed, "cpu")
    amp = torch.tensor(list(APPEARANCES.values()), dtype=torch.float64) * world.contrast
    pairs = [parse_prompt(p).mask().flatten().nonzero().flatten() for p in prompts]  # allowed a·D + d
    pick = torch.randint(0, 2**31 - 1, (len(prompts),), generator=generator)
    starts = torch.randint(0, pixels, (len(prompts),), generator=generator)
    noise = torch.randn((len(prompts), 1, lat, h, w), generator=generator, dtype=torch.float64)
    out = []
    for allowed, k, p0 in zip(pairs, pick.tolist(), starts.tolist()):
        pair = int(allowed[k % len(allowed)])
        a, d = divmod(pair, len(DIRECTIONS))
        frames_ = world.background + amp[a] * bumps[geo.traj[:, d * pixels + p0]]  # (F, P)
        out.append(frames_.reshape(1, f, h, w))
    return compress(world, torch.stack(out)) + world.spread * noise


def _aligned(world: ToyWorld, clips: torch.Tensor, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips rolled on the torus so that their nearest prompted trajectory starts at pixel 0, flat ``(B, F·H·W)``,
    and the (appearance, direction) pair of that trajectory ``(B,)``."""
    x = clips.detach().to("cpu", torch.float64)
    _, _, _, h, w = x.shape
    near = nearest_trajectories(world, x, prompts)
    rolled = [torch.roll(clip, (-(int(p) // w), -(int(p) % w)), dims=(-2, -1)) for clip, p in zip(x, near[:, 2])]
    return torch.stack(rolled).flatten(1), near[:, 0] * len(DIRECTIONS) + near[:, 1]


def _within_variance(features: torch.Tensor, groups: torch.Tensor) -> tuple[float, int]:
    """Pooled per-pixel variance around each group's mean, and its degrees of freedom."""
    total, dof = 0.0, 0
    for g in groups.unique():
        part = features[groups == g]
        if len(part) >= 2:
            total += float(((part - part.mean(0)) ** 2).sum()) / part.shape[1]
            dof += len(part) - 1
    return (total / dof if dof else float("nan")), dof


#: seed of the reference samples of the true world that :func:`distribution_metrics` compares against
REFERENCE_SEED = 1_000_003


def distribution_metrics(world: ToyWorld, clips: torch.Tensor, prompts: list[str], *, reference: int = 64,
                         seed: int = REFERENCE_SEED) -> dict[str, list[float]]:
    """Distribution-level metrics per distinct prompt: the toy's analogue of FVD, and the spread ratio.

    For each prompt, the clips generated for it are compared with ``reference`` exact samples of the true
    world for it (:func:`true_samples`, generator seeded from ``seed`` and the prompt: the same set for every
    call). The
    feature map is translation on the torus: every clip is rolled so that its nearest prompted true trajectory
    starts at pixel 0, so the features keep the blob's shape, its motion and the leftover noise, and drop only
    the start position (uniform in the true world). With d(x, y) the RMS pixel distance,

    * ``energy_distance`` = 2 E d(X, Y) − E d(X, X′) − E d(Y, Y′), X generated, Y true (unbiased: pairs of a
      clip with itself are left out). It is ≥ 0 in expectation and 0 only when the two distributions are the
      same, so a sampler that removes the data's own noise is penalised; samples of the true world score ≈ 0.
    * ``spread_ratio`` = sqrt(generated within-component variance / true within-component variance): the
      per-pixel variance of the aligned clips around the mean of their (appearance, direction) group. 1 is
      right; below 1 the sampler collapses variance, above 1 it adds noise or jitter.

    Returns ``{name: [value per prompt]}`` in the order the prompts first appear; a prompt with fewer than
    two clips gives NaN.
    """
    if len(prompts) != clips.shape[0]:
        raise ValueError(f"got {len(prompts)} prompts for {clips.shape[0]} clips")
    _, _, f, h, w = clips.shape
    features, groups = _aligned(world, clips, list(prompts))
    out: dict[str, list[float]] = {"energy_distance": [], "spread_ratio": []}
    for prompt in dict.fromkeys(prompts):
        index = torch.tensor([i for i, p in enumerate(prompts) if p == prompt])
        x, gx = features[index], groups[index]
        y, dyy, var_y = _reference(world, prompt, world.pixel_frames(f), h, w, reference, seed)
        n, dim = len(x), x.shape[1]
        if n < 2:
            out["energy_distance"].append(float("nan"))
            out["spread_ratio"].append(float("nan"))
            continue
        dxy = torch.cdist(x, y).mean()
        dxx = torch.cdist(x, x).sum() / (n * (n - 1))
        out["energy_distance"].append(float(2 * dxy - dxx - dyy) / math.sqrt(dim))
        var_x, _ = _within_variance(x, gx)
        out["spread_ratio"].append(math.sqrt(var_x / var_y))
    return out


@functools.lru_cache(maxsize=64)
def _reference(world: ToyWorld, prompt: str, frames: int, height: int, width: int, reference: int, seed: int):
    """Aligned reference samples of one prompt, their mean pairwise distance and within-component variance (cached:
    every program of a sweep is compared with the same set). The generator is seeded per prompt."""
    generator = torch.Generator("cpu").manual_seed(seed + sum(map(ord, prompt)) * 7919)
    ref = true_samples(world, [prompt] * reference, generator, frames=frames, height=height, width=width)
    y, gy = _aligned(world, ref, [prompt] * reference)
    m = len(y)
    dyy = float(torch.cdist(y, y).sum() / (m * (m - 1)))
    return y, dyy, _within_variance(y, gy)[0]


def render(world: ToyWorld, prompts: list[str], starts: torch.Tensor, *, frames: int | None = None, height: int | None = None,
           width: int | None = None, degraded: bool = False) -> torch.Tensor:
    """Noise-free clips ``(B, 1, F, H, W)`` (float64) of each prompt's (first allowed) appearance and direction.

    ``starts``: ``(B,)`` flat start pixels. ``degraded=True`` renders the VDM's blob instead of the true one.
    With temporal compression the clips are compressed to latents ``(B, 1, L, H, W)``.
    """
    f, h, w = frames or world.frames, height or world.height, width or world.width
    blob_width, contrast = world.vdm_blob if degraded else world.idm_blob
    bumps = _bump_matrix(h, w, blob_width, torch.float64, "cpu")
    geo = _Geometry.build(f, h, w, world.speed, "cpu")
    names = list(DIRECTIONS)
    out = []
    for prompt, p0 in zip(prompts, starts.tolist()):
        s = parse_prompt(prompt)
        d = names.index(s.directions[0])
        pixels = geo.traj[:, d * h * w + int(p0)]  # (F,)
        frames_ = world.background + APPEARANCES[s.appearances[0]] * contrast * bumps[pixels]  # (F, P)
        out.append(frames_.reshape(1, f, h, w))
    return compress(world, torch.stack(out))


# ------------------------------------------------------------------------------------------------
# The backbone
# ------------------------------------------------------------------------------------------------

_DTYPES = {"float64": torch.float64, "fp64": torch.float64, "float32": torch.float32, "fp32": torch.float32}


class ToyBackbone(Backbone):
    """The ``toy`` backbone: the analytic video world with exact IDM, VDM, guidance and metrics.

    Options (all optional): ``world`` (``"default"``, ``"large-mismatch"`` or ``"learned"``), any :class:`ToyWorld`
    parameter (``frames``, ``height``, ``width``, ``blob_width``, ``contrast``, ``background``, ``spread``, ``mismatch``,
    ``vdm_blob_width``, ``vdm_contrast``, ``speed``, ``beta_start``, ``beta_end``, ``vdm_spread``, ``idm_bias``,
    ``leak``, ``temporal_compression``; named worlds also ``"compressed"``), ``guidance`` (ω of the
    standard step, default 7.5), ``steps`` (default 50), ``program`` (default ``IV-IV``), ``fps`` (default 4),
    ``dtype`` (``float64`` default, exact to ~1e-12; ``float32`` agrees to ~1e-6 relative), ``device``, and ``threads``
    (torch intra-op threads while a score is evaluated, default 1: the world's tensors are so small that
    thread synchronisation costs more than it saves, and on a busy machine far more; None leaves torch's setting).
    """

    name = "toy"
    vae_scale_factor = 1
    example_prompt = "a bright blob moving right"

    def __init__(
        self,
        world: str = "default",
        *,
        frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        blob_width: float | None = None,
        contrast: float | None = None,
        background: float | None = None,
        spread: float | None = None,
        mismatch: float | None = None,
        vdm_blob_width: float | None = None,
        vdm_contrast: float | None = None,
        speed: int | None = None,
        beta_start: float | None = None,
        beta_end: float | None = None,
        vdm_spread: float | None = None,
        idm_bias: float | None = None,
        leak: float | None = None,
        temporal_compression: int | None = None,
        guidance: float = 7.5,
        steps: int = 50,
        program: str = "IV-IV",
        fps: int = 4,
        dtype: str | torch.dtype = "float64",
        device: str | torch.device = "cpu",
        threads: int | None = 1,
    ):
        self.world = ToyWorld.named(
            world,
            frames=frames,
            height=height,
            width=width,
            blob_width=blob_width,
            contrast=contrast,
            background=background,
            spread=spread,
            mismatch=mismatch,
            vdm_blob_width=vdm_blob_width,
            vdm_contrast=vdm_contrast,
            speed=speed,
            beta_start=beta_start,
            beta_end=beta_end,
            vdm_spread=vdm_spread,
            idm_bias=idm_bias,
            leak=leak,
            temporal_compression=temporal_compression,
        )
        self.world_name = world
        if isinstance(dtype, torch.dtype):
            self.dtype = dtype
        elif dtype in _DTYPES:
            self.dtype = _DTYPES[dtype]
        else:
            raise ValueError(f"toy backbone: dtype must be fp32 or float64 (-o dtype=float64, the default), got {dtype!r}")
        self.device = resolve_device(device or "cpu")
        self.defaults = Defaults(
            height=self.world.height, width=self.world.width, frames=self.world.frames, steps=steps,
            guidance=float(guidance), program=program, fps=fps,
        )
        table = self.make_scheduler().alphas_cumprod
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"toy backbone: threads must be an integer >= 1 or None, got {threads!r}")
        self.vdm = VideoScore(self.world, table, self.dtype, self.device, threads)
        self.image_model = ImageScore(self.world, table, self.dtype, self.device, threads)
        self.idm = ImageOnVideo(self.image_model)

    # -- Backbone interface ------------------------------------------------------------------------

    def make_scheduler(self):
        return make_scheduler(self.world.beta_start, self.world.beta_end)

    def encode(self, prompts: list[str], negative_prompts: list[str]) -> Conditioning:
        """Masks of allowed components for the doubled batch [negative; prompt]: VDM (2N, A, D), IDM (2N, A)."""
        sets = [parse_prompt(p) for p in negative_prompts] + [parse_prompt(p) for p in prompts]
        vdm = torch.stack([s.mask() for s in sets]).to(self.device)
        return Conditioning(idm=vdm.any(2), vdm=vdm, prompts=list(prompts), negative_prompts=list(negative_prompts))

    def check_request(self, *, frames: int, height: int, width: int, steps: int) -> None:
        super().check_request(frames=frames, height=height, width=width, steps=steps)
        self.world.latent_frames(frames)  # with temporal compression, frames must be 1 + k·n

    def generate(self, prompt, **kwargs):
        """:meth:`Backbone.generate`; with temporal compression the IDM's cost counts the latent frames it sees."""
        video = super().generate(prompt, **kwargs)
        if self.world.temporal_compression > 1:
            frames = self.world.latent_frames(video.settings["frames"])
            images = video.program.cost(num_steps=video.settings["steps"], num_frames=frames).idm_image_evals
            video.cost = {**video.cost, "idm_image_evals": images}
        return video

    def initial_latents(self, batch: int, frames: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        # diffusers' randn_tensor with a CPU generator: float32 draws on the CPU, then moved and cast
        frames = self.world.latent_frames(frames)  # the latent frames (the frames themselves without compression)
        noise = torch.randn((batch, 1, frames, height, width), generator=generator, device="cpu", dtype=torch.float32)
        return noise.to(self.device, self.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        frames = ((latents[:, 0].detach().to("cpu", torch.float32) + 1) / 2).clamp(0, 1)  # (B, F, H, W)
        return frames[..., None].expand(*frames.shape, 3).contiguous()

    def metrics(self, latents: torch.Tensor, conditioning: Conditioning) -> dict[str, float]:
        per_clip = clip_metrics(self.world, latents, conditioning.prompts)
        out = {}
        for name, values in per_clip.items():
            out[name] = None if bool(torch.isnan(values).any()) else round(float(values.mean()), 6)
        return out

    def clip_metrics(self, latents: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
        """The metrics of every clip (see :func:`clip_metrics`)."""
        return clip_metrics(self.world, latents, prompts)

    def distribution_metrics(self, latents: torch.Tensor, prompts: list[str]) -> dict[str, list[float]]:
        """Energy distance to exact samples of the true world and spread ratio, per prompt (see :func:`distribution_metrics`)."""
        return distribution_metrics(self.world, latents, prompts)

    def true_samples(self, prompts: list[str], seed: int = 0, **size) -> torch.Tensor:
        """Exact samples of the true world, one per prompt, as latents of this backbone (see :func:`true_samples`)."""
        generator = torch.Generator("cpu").manual_seed(seed)
        return true_samples(self.world, prompts, generator, **size).to(self.device, self.dtype)

    def describe(self) -> dict[str, Any]:
        return {
            "backbone": self.name,
            "world": self.world_name,
            "world_parameters": self.world.as_dict(),
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": str(self.device),
        }

    def render(self, prompts: list[str], starts: torch.Tensor, *, degraded: bool = False, **size) -> torch.Tensor:
        """Noise-free clips of the world (see :func:`render`), as latents of this backbone."""
        return render(self.world, prompts, starts, degraded=degraded, **size).to(self.device, self.dtype)

    @property
    def prompts(self) -> list[str]:
        """Every (appearance, direction) prompt of the world; the sweep's default prompt set."""
        return all_prompts()
