"""Shared machinery of the diffusers-based backbones: finding weights, device and dtype, score adapters, prompts, decoding, LoRA.

Every backbone built on diffusers components (``animatediff``, ``modelscope``, the ``videocrafter2``
plugin) goes through the same five steps, each written once here:

1. **Where the weights are** — :func:`resolve_models` turns each model option (a local folder in
   diffusers layout, a single ``.safetensors`` file, or a hub id at a revision) into a local path, looking
   in the Hugging Face cache without touching the network; a model that is not cached is looked for on
   the hub only after one quick connection check (:func:`hub_unreachable`). Every model that cannot be
   found is collected and reported in one :class:`MissingWeights` error, before anything is loaded.
2. **Device and dtype** — :func:`resolve_device`, :func:`resolve_dtype`: CUDA when present, fp16 on CUDA
   and fp32 on the CPU; fp16 on the CPU is refused (see :func:`resolve_dtype`).
3. **Loading** — :func:`plan_weights` chooses each model's files from those it publishes (fp16 where it has
   them and the run is fp16; a pickle-only model refused with :class:`UnsafeWeights`), then
   ``use_safetensors=True`` unless the user allowed pickled weights (:func:`load_kwargs`).
4. **Score adapters** — :class:`UNetScore` wraps a diffusers UNet as ``eps(x, t, cond)`` (v- and
   x0-prediction converted to ε once, here); :class:`NearestResized` runs an image model at another
   latent size; image models see video latents through :class:`ivmixed.guidance.ImageOnVideo`.
5. **Around sampling** — prompt encoding into the ``[uncond; cond]`` batch (:func:`encode_prompt_pair`),
   VAE decoding in chunks of frames (:func:`decode_video`), LoRA on an image UNet (:func:`apply_loras`),
   and the latent-space check (:func:`check_pair`).

:class:`DiffusersBackbone` puts the parts common to all of them (scheduler, initial noise, decoding,
manifest) on top of :class:`ivmixed.backbones.base.Backbone`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from ..steps import NoiseSchedule, fold_frames, unfold_frames
from .base import Backbone, IncompatibleModels, check_same_latent_space

__all__ = [
    "MissingWeights",
    "UnsafeWeights",
    "ModelRequest",
    "Location",
    "resolve_models",
    "peek_json",
    "require_json",
    "hub_offline",
    "hub_unreachable",
    "plan_weights",
    "revision_option",
    "variant_option",
    "resolve_device",
    "resolve_dtype",
    "dtype_name",
    "load_kwargs",
    "dtype_keyword",
    "explain_load_error",
    "to_device",
    "UNetScore",
    "NearestResized",
    "to_eps",
    "encode_prompt_pair",
    "decode_video",
    "LoraSpec",
    "parse_loras",
    "apply_loras",
    "ddim_scheduler",
    "DDIM_OVERRIDES",
    "schedule_from_config",
    "check_pair",
    "DiffusersBackbone",
]

logger = logging.getLogger(__name__)

# -- 1. where the weights are ---------------------------------------------------------------------------------

_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
_WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".bin", ".pt", ".pth")


def _with_flag(flag: str, value: str) -> str:
    return f"{flag}{value}" if flag.endswith("=") else f"{flag} {value}"


class MissingWeights(FileNotFoundError):
    """Some models of a backbone are neither local folders/files nor in the Hugging Face cache (and cannot be downloaded).

    ``missing`` lists ``(flag, value, reason)`` for every model that could not be found, so one error
    names them all.
    """

    def __init__(self, backbone: str, missing: list[tuple[str, str, str, str]], revisions: dict[str, str] | None = None):
        self.backbone, self._entries, self.revisions = backbone, list(missing), dict(revisions or {})
        self.missing = [(flag, value, reason) for _, flag, value, reason in missing]
        lines = [f"backbone '{backbone}' cannot find {len(missing)} of its models:"]
        for role, flag, value, reason in missing:
            lines.append(f"  - {role}: {_with_flag(flag, value)}")
            lines.append(f"      {reason}")
        flags = ", ".join(dict.fromkeys(_with_flag(flag, "PATH") for _, flag, _, _ in missing))
        hub_ids = [value for _, _, value, _ in missing if _HUB_ID.fullmatch(value) and not _looks_like_path(value)]
        lines += ["Provide each one in one of these ways:", f"  - a local copy in diffusers layout: {flags}"]
        if hub_ids:
            lines.append("  - download it once, where the hub can be reached, into the cache used here:")
            lines += [
                f"      hf download {hub_id}" + (f" --revision {self.revisions[hub_id]}" if self.revisions.get(hub_id) else "")
                for hub_id in hub_ids
            ]
            lines.append("    (older huggingface_hub: huggingface-cli download ID)")
        lines.append(f"  - point HF_HOME (the cache is $HF_HOME/hub) or HF_HUB_CACHE at a cache that holds it; now: {_cache_dir()}")
        super().__init__("\n".join(lines))

    def __str__(self) -> str:  # FileNotFoundError would prefix an errno
        return self.args[0]

    def __reduce__(self):  # so the error survives being sent between processes
        return (type(self), (self.backbone, self._entries, self.revisions))


class UnsafeWeights(FileNotFoundError):
    """A model whose weights exist only as pickles (``.bin``), refused unless ``--allow-pickle`` is given: no safe file was found."""

    def __str__(self) -> str:  # FileNotFoundError would prefix an errno
        return self.args[0]

    def __reduce__(self):
        return (type(self), (self.args[0],))


@dataclass(frozen=True)
class ModelRequest:
    """One model a backbone needs, as the user gave it (or the default).

    Args:
        option: the backbone option that sets it (``model``, ``image_model``, ``motion_adapter``).
        value: a local folder, a local file or a hub id.
        role: words for messages ("video model", "motion adapter", ...).
        markers: files (relative paths) of which at least one identifies the expected folder layout;
            the first is also the file checked in the Hugging Face cache.
        single_file: a single weights file is accepted for this model.
    """

    option: str
    value: str
    role: str
    markers: tuple[str, ...] = ("model_index.json",)
    single_file: bool = False
    revision: str | None = None  # hub revision: branch, tag, commit or ``refs/pr/N`` (not used for local paths)

    @property
    def flag(self) -> str:
        return {"model": "--model", "image_model": "--image-model"}.get(self.option, f"-o {self.option}=")


def revision_option(option: str) -> str:
    """The backbone option that sets the hub revision of model option ``option`` (``revision``, ``image_model_revision``, ...)."""
    return "revision" if option == "model" else f"{option}_revision"


def variant_option(option: str) -> str:
    """The backbone option that sets the weight variant of model option ``option`` (``variant``, ``image_variant``, ...)."""
    return {"model": "variant", "image_model": "image_variant"}.get(option, f"{option}_variant")


@dataclass(frozen=True)
class Location:
    """Where one model's files are: a local folder or file, or a hub id that will be downloaded on load."""

    option: str
    source: str  # what the user gave (a hub id or a path), for manifests and messages
    path: str  # a local folder or file; for kind "hub" the id itself
    kind: str  # "folder" | "file" | "hub"
    revision: str | None = None  # the hub revision asked for (None: main)
    role: str = "model"

    def files(self) -> list[str]:
        """Every file of this model, as paths relative to its root (a hub model not cached lists the repository once)."""
        if self.kind == "file":
            return [Path(self.path).name]
        if self.kind == "folder":
            root = Path(self.path)
            return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        key = (self.path, self.revision)
        if key not in _REPO_FILES:
            from huggingface_hub import HfApi

            _REPO_FILES[key] = sorted(HfApi().list_repo_files(self.path, revision=self.revision))
        return _REPO_FILES[key]

    def read_json(self, relpath: str) -> dict[str, Any] | None:
        """A JSON file of this model (None if it does not exist); a hub model fetches just that file."""
        if self.kind == "file":
            return None
        if self.kind == "folder":
            file = Path(self.path) / relpath
            return json.loads(file.read_text()) if file.is_file() else None
        from huggingface_hub import hf_hub_download

        try:
            return json.loads(Path(hf_hub_download(self.path, relpath, revision=self.revision)).read_text())
        except Exception:  # noqa: BLE001 - a missing optional file
            return None

    def describe(self) -> str:
        source = f"{self.source} (revision {self.revision})" if self.revision else self.source
        return source if self.kind == "hub" or self.source == self.path else f"{source} ({self.path})"


_REPO_FILES: dict[tuple[str, str | None], list[str]] = {}


class _NotFound(Exception):
    pass


def hub_offline() -> bool:
    """True when the Hugging Face hub must not be contacted (``HF_HUB_OFFLINE`` set)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return True


_UNREACHABLE: dict[str, str | None] = {}
_PROBE_TIMEOUT_S = 3.0


def _socket_words(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return "its host name does not resolve: no network or no DNS"
    if isinstance(exc, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"no answer within {_PROBE_TIMEOUT_S:g} s"
    return f"the connection failed ({type(exc).__name__})"


def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached, or None when it answers.

    One TCP connection to the endpoint (``HF_ENDPOINT``, or the HTTPS proxy when one is set), a few seconds
    at most and no retries, asked once per process: a machine without network learns it at once instead
    of after a minute of download retries.
    """
    try:
        from huggingface_hub import constants
    except ImportError:
        return "huggingface_hub is not installed"
    endpoint = str(constants.ENDPOINT)
    if endpoint not in _UNREACHABLE:
        proxy = next((os.environ[k] for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy") if os.environ.get(k)), None)
        target = urllib.parse.urlsplit(proxy if proxy and "://" in proxy else endpoint)
        host = target.hostname or ""
        try:
            port = target.port or (443 if target.scheme == "https" else 80)
            with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S):
                reason = None
        except OSError as exc:
            reason = f"{endpoint}{' (through the proxy ' + host + ')' if proxy else ''}: {_socket_words(exc)}"
        except ValueError:
            reason = f"{endpoint} is not a URL (HF_ENDPOINT)"
        _UNREACHABLE[endpoint] = reason
    return _UNREACHABLE[endpoint]


def _cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:
        return "~/.cache/huggingface/hub"


def _cached_snapshot(repo_id: str, markers: Sequence[str], revision: str | None = None) -> str | None:
    """The local snapshot folder of ``repo_id`` (at ``revision``, default main) in the Hugging Face cache, if it holds one of ``markers``."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for marker in markers:
        try:
            hit = try_to_load_from_cache(repo_id, marker, cache_dir=_cache_dir(), revision=revision)
        except Exception:  # noqa: BLE001 - a malformed id is simply not cached
            return None
        if isinstance(hit, str):
            return str(Path(hit).parents[len(Path(marker).parts) - 1])
    return None


def _looks_like_path(value: str) -> bool:
    return (
        value.startswith(("/", "./", "../", "~", "."))
        or "\\" in value
        or value.count("/") > 1
        or value.lower().endswith(_WEIGHT_SUFFIXES)
    )


def _resolve_one(request: ModelRequest, allow_pickle: bool) -> Location:
    value = os.path.expanduser(str(request.value))
    if os.path.isdir(value):
        if request.markers and not any(os.path.exists(os.path.join(value, m)) for m in request.markers):
            raise _NotFound(
                f"{value} is a folder but not a diffusers {request.role} (none of {', '.join(request.markers)} inside)"
            )
        return Location(request.option, str(request.value), value, "folder", role=request.role)
    if os.path.isfile(value):
        if not request.single_file:
            raise _NotFound(f"{value} is a file; the {request.role} must be a folder in diffusers layout or a hub id")
        if not value.lower().endswith(".safetensors") and not allow_pickle:
            raise _NotFound(
                f"{value} is not a .safetensors file; pickled weights can run code when loaded, so they need "
                "--allow-pickle (only for files you trust)"
            )
        return Location(request.option, str(request.value), value, "file", role=request.role)
    if _looks_like_path(value):
        raise _NotFound(f"no such file or folder: {value}")
    if not _HUB_ID.fullmatch(value):
        raise _NotFound(f"{value!r} is neither an existing path nor a Hugging Face model id (owner/name)")
    revision = request.revision or None
    at = f" at revision {revision}" if revision else ""
    snapshot = _cached_snapshot(value, request.markers, revision)
    if snapshot is not None:
        logger.info("%s %s%s: found in the Hugging Face cache at %s", request.role, value, at, snapshot)
        return Location(request.option, value, snapshot, "folder", revision=revision, role=request.role)
    if hub_offline():
        raise _NotFound(f"not in the Hugging Face cache ({_cache_dir()}){at} and the hub is offline (HF_HUB_OFFLINE is set)")
    unreachable = hub_unreachable()
    if unreachable is not None:  # checked once, in seconds: no minute of download retries on a machine without network
        raise _NotFound(
            f"not in the Hugging Face cache ({_cache_dir()}){at} and the hub cannot be reached ({unreachable}); "
            "without network, set HF_HUB_OFFLINE=1 to use the cache alone"
        )
    try:  # one small file: proves the hub answers and the repository exists before anything heavy starts
        from huggingface_hub import hf_hub_download

        hf_hub_download(value, request.markers[0], revision=revision)
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise _NotFound(
            f"not in the Hugging Face cache ({_cache_dir()}) and it cannot be downloaded ({type(exc).__name__}: {reason[:200]})"
        ) from None
    logger.info("%s %s%s: not cached; it will be downloaded from the hub when it loads", request.role, value, at)
    return Location(request.option, value, value, "hub", revision=revision, role=request.role)


def resolve_models(backbone: str, requests: Iterable[ModelRequest], *, allow_pickle: bool = False) -> dict[str, Location]:
    """Find every requested model; raise one :class:`MissingWeights` naming all that are missing.

    Local folders and files are used as they are; hub ids are looked up in the Hugging Face cache (no
    network). A hub id that is not cached is downloaded on load when the hub is reachable, and
    counts as missing when ``HF_HUB_OFFLINE`` is set or the hub does not answer.
    """
    found: dict[str, Location] = {}
    missing: list[tuple[str, str, str, str]] = []
    revisions: dict[str, str] = {}
    for request in requests:
        try:
            found[request.option] = _resolve_one(request, allow_pickle)
        except _NotFound as exc:
            missing.append((request.role, request.flag, str(request.value), str(exc)))
            if request.revision:
                revisions[str(request.value)] = request.revision
    if missing:
        raise MissingWeights(backbone, missing, revisions)
    return found


def require_json(location: Location, *relpaths: str) -> dict[str, Any]:
    """The first of ``relpaths`` that exists in ``location``, or a clear error naming the layout that was expected."""
    for relpath in relpaths:
        found = location.read_json(relpath)
        if found is not None:
            return found
    raise FileNotFoundError(
        f"{location.describe()} ({location.option}) has no {' or '.join(relpaths)}: it is not the diffusers layout "
        "this backbone expects"
    )


def peek_json(value: str, relpath: str, revision: str | None = None) -> dict[str, Any] | None:
    """Read ``relpath`` of a model given as a local folder or a cached hub id, without any network access."""
    value = os.path.expanduser(str(value))
    folder = value if os.path.isdir(value) else (None if _looks_like_path(value) else _cached_snapshot(value, (relpath,), revision))
    if folder is None:
        return None
    file = Path(folder) / relpath
    try:
        return json.loads(file.read_text()) if file.is_file() else None
    except (OSError, ValueError):
        return None


# -- 2. device and dtype ---------------------------------------------------------------------------------------

_DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device to run on: as given, else ``cuda`` when available, else ``cpu``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"--device {device!r} is not a device torch knows (try cpu, cuda or cuda:1): {exc}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"--device {device} asks for CUDA, but torch {torch.__version__} sees no CUDA device here; use --device cpu"
        )
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The model precision: as given, else fp16 on CUDA and fp32 elsewhere.

    fp16 on the CPU is refused rather than silently changed: many CPU kernels lack fp16 and the rest are
    slow, so the user chooses fp32 (the CPU default) or bf16 explicitly.
    """
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    else:
        key = str(dtype).lower().removeprefix("torch.")
        if key not in _DTYPES:
            raise ValueError(f"--dtype {dtype!r}: expected fp32, fp16 or bf16")
        resolved = _DTYPES[key]
    if resolved not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"--dtype {dtype!r}: expected fp32, fp16 or bf16")
    if resolved == torch.float16 and device.type == "cpu":
        raise ValueError("--dtype fp16 needs a CUDA device; on the CPU use fp32 (the default there) or bf16")
    return resolved


def dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, str(dtype))


def dtype_keyword() -> str:
    """The name diffusers' ``from_pretrained`` uses for the dtype: ``dtype`` in recent releases, ``torch_dtype`` before."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401 - present where ``dtype`` is the name
    except ImportError:
        return "torch_dtype"
    return "dtype"


def load_kwargs(
    dtype: torch.dtype, *, allow_pickle: bool, variant: str | None = None, location: Location | None = None
) -> dict[str, Any]:
    """Keyword arguments for every ``from_pretrained``: dtype, safetensors only unless pickles are allowed, variant,
    and the revision of a model that is downloaded from the hub (a cached one is already that revision's folder)."""
    kwargs: dict[str, Any] = {dtype_keyword(): dtype, "use_safetensors": None if allow_pickle else True}
    if variant:
        kwargs["variant"] = variant
    if location is not None and location.kind == "hub" and location.revision:
        kwargs["revision"] = location.revision
    return kwargs


_WEIGHT_NAME = re.compile(r"(diffusion_pytorch_model|model|pytorch_model)(?:\.(\w+))?(?:-\d{5}-of-\d{5})?\.(safetensors|bin)")
_NO_VARIANT = {"", "none", "fp32", "default", "main"}


def _weights_of(files: Sequence[str], subfolder: str) -> dict[tuple[str | None, str], list[str]]:
    """The ``from_pretrained`` weight files of one component folder, by (variant, format)."""
    prefix = f"{subfolder}/" if subfolder else ""
    table: dict[tuple[str | None, str], list[str]] = {}
    for name in files:
        rest = name[len(prefix) :] if name.startswith(prefix) else None
        match = _WEIGHT_NAME.fullmatch(rest) if rest is not None and "/" not in rest else None
        if match:
            table.setdefault((match.group(2), match.group(3)), []).append(name)
    return table


def plan_weights(
    location: Location,
    subfolders: Sequence[str],
    requested: str | None,
    *,
    dtype: torch.dtype,
    allow_pickle: bool,
) -> str | None:
    """The weight variant to load for one model, chosen from the files it publishes, before anything loads.

    ``subfolders`` are the component folders that will be loaded (``""``: the model's root). ``requested``
    None (or ``"auto"``) picks ``fp16`` when the dtype is fp16 (the CUDA default) and every one of them
    publishes fp16 weights, and the plain files otherwise: a variant that the repository lacks is never
    asked for. An explicit variant must exist in every subfolder; ``"none"`` asks for the plain files.
    Raises :class:`UnsafeWeights` when the chosen files exist only as pickles and ``allow_pickle`` is off,
    naming the files, the risk and the flags that help.
    """
    if location.kind == "file":
        return None
    files = location.files()
    tables = {sub: _weights_of(files, sub) for sub in subfolders}
    formats = ("safetensors", "bin") if allow_pickle else ("safetensors",)
    option = variant_option(location.option)

    def has(sub: str, variant: str | None, fmts=formats) -> bool:
        return any((variant, fmt) in tables[sub] for fmt in fmts)

    wanted = None if requested is None else str(requested).strip()
    if wanted is None or wanted.lower() == "auto":
        variant = "fp16" if dtype == torch.float16 and all(has(sub, "fp16") for sub in subfolders) else None
    elif wanted.lower() in _NO_VARIANT:
        variant = None
    else:
        lacking = [sub or "(root)" for sub in subfolders if not has(sub, wanted, ("safetensors", "bin"))]
        if lacking:
            found = sorted({v for table in tables.values() for v, _ in table if v})
            raise ValueError(
                f"-o {option}={wanted}: {location.describe()} ({location.role}) publishes no {wanted} weights in "
                f"{', '.join(lacking)} (variants it has: {', '.join(found) or 'none'}); leave {option} unset to "
                f"load what it publishes, or set -o {option}=none"
            )
        variant = wanted
    if not allow_pickle:
        pickles = [
            name
            for sub in subfolders
            if not has(sub, variant, ("safetensors",))
            for name in tables[sub].get((variant, "bin"), [])
        ]
        if pickles:
            raise UnsafeWeights(_pickle_message(location, pickles))
    if variant:
        logger.info("%s %s: loading the %s weights", location.role, location.source, variant)
    return variant


def _pickle_message(location: Location, pickles: Sequence[str]) -> str:
    if location.revision is not None or (_HUB_ID.fullmatch(location.source) and not _looks_like_path(location.source)):
        way = (
            f"choose a revision of the repository that has .safetensors files (-o {revision_option(location.option)}=REVISION, "
            "e.g. a refs/pr/N conversion or a commit)"
        )
    else:
        way = "convert them to .safetensors"
    return (
        f"the {location.role} {location.describe()} has only pickled weights for {', '.join(pickles)} (no .safetensors). "
        f"Loading a pickle can run any code its author put in it, so ivmixed loads .safetensors only. Either {way}, "
        f"or, if you trust the files of {location.source}, add --allow-pickle."
    )


def explain_load_error(exc: Exception, location: Location, *, allow_pickle: bool) -> Exception:
    """A clearer error for the usual reason a load fails after resolution: no ``.safetensors`` weights."""
    text = str(exc)
    if not allow_pickle and ("safetensors" in text.lower() or "no file named" in text.lower()):
        return FileNotFoundError(
            f"loading {location.describe()} failed: {text.strip().splitlines()[0]}\n"
            "ivmixed loads .safetensors weights only. If this model has fp16 safetensors files, add -o variant=fp16; "
            "if it only has pickled (.bin/.ckpt) weights and you trust them, add --allow-pickle."
        )
    return exc


# -- 4. score adapters -----------------------------------------------------------------------------------------


def to_eps(out: torch.Tensor, x: torch.Tensor, t: int, prediction_type: str, schedule: NoiseSchedule | None) -> torch.Tensor:
    """Convert a network output to the noise estimate ε (the one quantity the sampler uses).

    v-prediction (Salimans & Ho, 2022): ε = sqrt(ᾱ_t)·v + sqrt(1 − ᾱ_t)·x_t.
    x0-prediction ("sample"):           ε = (x_t − sqrt(ᾱ_t)·x̂0) / sqrt(1 − ᾱ_t).
    """
    if prediction_type == "epsilon":
        return out
    if schedule is None:
        raise ValueError(f"a {prediction_type} model needs the noise schedule to be converted to epsilon")
    alpha_bar = schedule.alpha_bar(t)
    a, s = alpha_bar**0.5, (1 - alpha_bar) ** 0.5
    if prediction_type == "v_prediction":
        return a * out + s * x
    if prediction_type == "sample":
        return (x - a * out) / s
    raise ValueError(f"unknown prediction_type {prediction_type!r}; expected epsilon, v_prediction or sample")


class UNetScore:
    """A diffusers UNet as a score model ``eps(x, t, cond)``.

    ``x`` is whatever the UNet takes: video latents ``(N, C, F, H, W)`` for a motion or 3-D UNet, a batch of
    images ``(N·F, C, H, W)`` for an image UNet (behind :class:`~ivmixed.guidance.ImageOnVideo`). ``cond``
    is the text embedding batch ``(N, L, D)`` of the doubled CFG batch. With ``repeat_cond`` each
    embedding row is repeated for every frame of its clip (``repeat_interleave``), which is what image UNets
    and — since diffusers 0.31 — ``UNetMotionModel`` expect; ``UNet3DConditionModel`` repeats internally.

    Args:
        unet: the diffusers model.
        schedule: the ᾱ table, used to convert v- or x0-prediction outputs to ε.
        prediction_type: the UNet's training target (the scheduler config's ``prediction_type``).
        repeat_cond: repeat embedding rows per frame (see above).
        call_kwargs: extra keyword arguments of every call (e.g. ``fps`` for VideoCrafter2).
    """

    def __init__(
        self,
        unet,
        *,
        schedule: NoiseSchedule | None = None,
        prediction_type: str = "epsilon",
        repeat_cond: bool = False,
        call_kwargs: dict[str, Any] | None = None,
    ):
        self.unet = unet
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.repeat_cond = repeat_cond
        self.call_kwargs = dict(call_kwargs or {})
        self._repeated: tuple[torch.Tensor, int, torch.Tensor] | None = None

    def _rows(self, cond: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if not self.repeat_cond:
            return cond
        rows = x.shape[0] * x.shape[2] if x.ndim == 5 else x.shape[0]
        if rows % cond.shape[0]:
            raise ValueError(f"cannot pair {cond.shape[0]} text embeddings with {rows} network rows")
        reps = rows // cond.shape[0]
        cached = self._repeated
        if cached is not None and cached[0] is cond and cached[1] == reps:
            return cached[2]
        repeated = cond.repeat_interleave(reps, dim=0) if reps > 1 else cond
        self._repeated = (cond, reps, repeated)
        return repeated

    def __call__(self, x: torch.Tensor, t: int, cond: torch.Tensor) -> torch.Tensor:
        hidden = self._rows(cond, x)
        with torch.no_grad():
            out = self.unet(x, t, encoder_hidden_states=hidden, return_dict=False, **self.call_kwargs)[0]
        return to_eps(out, x, t, self.prediction_type, self.schedule)


class NearestResized:
    """Runs an image score model at a fixed latent size: ``x`` resized (nearest) to ``size``, ε resized back.

    This is ModelScope's IDM path in the released code (the SD1.5 UNet sees 64×64 latents whatever the
    video size). Only the noise estimate is resized back; the latent itself is never resampled, so where
    the resize shrinks the frame, the frame keeps its detail (see docs/backbones.md).
    """

    def __init__(self, model, size: tuple[int, int]):
        self.model = model
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, x: torch.Tensor, t: int, cond: Any) -> torch.Tensor:
        height, width = x.shape[-2:]
        if (height, width) == self.size:
            return self.model(x, t, cond)
        small = torch.nn.functional.interpolate(x, size=self.size, mode="nearest")
        return torch.nn.functional.interpolate(self.model(small, t, cond), size=(height, width), mode="nearest")


# -- 5. prompts, decoding, LoRA -------------------------------------------------------------------------------


def _encode_texts(tokenizer, text_encoder, texts: list[str], device: torch.device) -> torch.Tensor:
    """CLIP text embeddings of ``texts`` (last hidden state), exactly as diffusers' SD pipelines compute them."""
    inputs = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt")
    mask = inputs.attention_mask.to(device) if getattr(text_encoder.config, "use_attention_mask", False) else None
    with torch.no_grad():
        embeds = text_encoder(inputs.input_ids.to(device), attention_mask=mask)[0]
    return embeds.to(dtype=text_encoder.dtype, device=device)


def encode_prompt_pair(tokenizer, text_encoder, prompts: list[str], negatives: list[str], device: torch.device) -> torch.Tensor:
    """Embeddings of the doubled CFG batch ``[uncond; cond]``: shape ``(2B, L, D)``, negatives first.

    Prompts are encoded as one batch and negative prompts as another, in that order, like
    ``StableDiffusionPipeline.encode_prompt`` (so the numbers agree with the stock pipelines bit for bit).
    """
    if len(prompts) != len(negatives):
        raise ValueError(f"{len(prompts)} prompts but {len(negatives)} negative prompts")
    cond = _encode_texts(tokenizer, text_encoder, list(prompts), device)
    uncond = _encode_texts(tokenizer, text_encoder, list(negatives), device)
    return torch.cat([uncond, cond])


def decode_video(vae, latents: torch.Tensor, *, chunk_size: int = 16) -> torch.Tensor:
    """Latents ``(B, C, F, h, w)`` -> frames ``(B, F, H, W, 3)`` float32 in [0, 1] on the CPU, decoding ``chunk_size`` frames at a time.

    The same arithmetic as ``AnimateDiffPipeline.decode_latents`` followed by diffusers' ``VideoProcessor``
    post-processing with ``output_type="np"``.
    """
    from diffusers.video_processor import VideoProcessor

    batch, _, frames = latents.shape[:3]
    images = fold_frames(1 / vae.config.scaling_factor * latents).to(vae.dtype)
    with torch.no_grad():
        decoded = torch.cat([vae.decode(images[i : i + chunk_size]).sample for i in range(0, images.shape[0], max(1, chunk_size))])
    video = unfold_frames(decoded, frames).float()  # (B, 3, F, H, W)
    frames_pt = VideoProcessor(do_resize=False).postprocess_video(video, output_type="pt")  # (B, F, 3, H, W)
    return frames_pt.permute(0, 1, 3, 4, 2).contiguous().cpu().float()


@dataclass(frozen=True)
class LoraSpec:
    """One ``--image-lora FILE[:SCALE]``."""

    path: Path
    scale: float = 1.0

    def __str__(self) -> str:
        return f"{self.path}:{self.scale:g}"


def parse_loras(items: Iterable[Any] | None, *, allow_pickle: bool = False) -> list[LoraSpec]:
    """Read ``"FILE[:SCALE]"`` strings (or ``(path, scale)`` pairs); check every file exists before anything loads."""
    specs: list[LoraSpec] = []
    for item in items or ():
        if isinstance(item, LoraSpec):
            spec = item
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            spec = LoraSpec(Path(item[0]), float(item[1]))
        else:
            text = os.fspath(item)
            path, scale = text, 1.0
            head, sep, tail = text.rpartition(":")
            if sep and head:
                try:
                    path, scale = head, float(tail)
                except ValueError:
                    path = text  # a colon that is part of the path
            spec = LoraSpec(Path(os.path.expanduser(path)), scale)
        if not spec.path.is_file():
            raise FileNotFoundError(f"--image-lora {spec.path}: no such file")
        if spec.path.suffix.lower() != ".safetensors" and not allow_pickle:
            raise ValueError(
                f"--image-lora {spec.path}: not a .safetensors file; pickled weights can run code when loaded, "
                "so they need --allow-pickle (only for files you trust)"
            )
        specs.append(spec)
    return specs


def apply_loras(unet, loras: Sequence[LoraSpec], *, allow_pickle: bool = False, prefix: str = "image_lora") -> list[str]:
    """Load each LoRA into ``unet`` through diffusers' LoRA loader and activate them with their scales.

    ``StableDiffusionPipeline.lora_state_dict`` reads diffusers, peft and kohya / civitai (``lora_unet_…``)
    files directly; only the UNet part is used (the text-encoder part of a LoRA is ignored, as in the
    released code). Returns the adapter names.
    """
    if not loras:
        return []
    import importlib.util

    if importlib.util.find_spec("peft") is None:
        raise ImportError("--image-lora needs the peft package: pip install 'ivmixed[lora]' (or pip install peft)")
    from diffusers import StableDiffusionPipeline

    names = []
    for index, lora in enumerate(loras):
        state_dict, alphas, metadata = StableDiffusionPipeline.lora_state_dict(
            str(lora.path.parent),
            weight_name=lora.path.name,
            use_safetensors=lora.path.suffix.lower() == ".safetensors" or not allow_pickle,
            return_lora_metadata=True,
        )
        if not any(k.startswith(("unet.", "text_encoder.")) for k in state_dict):
            state_dict = {f"unet.{k}": v for k, v in state_dict.items()}  # a bare UNet adapter (peft key names)
        if not any(k.startswith("unet.") for k in state_dict):
            raise ValueError(f"--image-lora {lora.path}: the file holds no UNet weights (only a text-encoder part?)")
        name = f"{prefix}_{index}"
        StableDiffusionPipeline.load_lora_into_unet(state_dict, alphas, unet, adapter_name=name, metadata=metadata)
        names.append(name)
    unet.set_adapters(names, weights=[lora.scale for lora in loras])
    return names


# -- schedules and the latent-space check ------------------------------------------------------------------

#: the standard-step DDIM settings of both released pipelines (reference-code-notes §2)
DDIM_OVERRIDES = {"clip_sample": False, "timestep_spacing": "linspace", "steps_offset": 1}


def ddim_scheduler(config: dict[str, Any], **overrides):
    """A fresh ``DDIMScheduler`` from a scheduler config (any scheduler class's config), with overrides."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(dict(config), **overrides)


def schedule_from_config(config: dict[str, Any]) -> NoiseSchedule:
    """The ᾱ table a scheduler config describes."""
    return NoiseSchedule.from_scheduler(ddim_scheduler(config))


def check_pair(
    *,
    idm_unet: dict[str, Any],
    vdm_unet: dict[str, Any],
    vdm_scheduler: dict[str, Any],
    idm_scheduler: dict[str, Any] | None,
    vdm_vae: dict[str, Any] | None = None,
    idm_vae: dict[str, Any] | None = None,
    idm_text_dim: int | None = None,
    idm_name: str = "image model",
    vdm_name: str = "video model",
) -> None:
    """Refuse an IDM/VDM pair that cannot be mixed, from their configs alone (before any weight loads).

    Checks latent channels, VAE scaling factor and ᾱ table (:func:`~ivmixed.backbones.base.check_same_latent_space`),
    and, when the IDM is conditioned on embeddings of another model's text encoder, the embedding width.
    """
    check_same_latent_space(
        idm_channels=int(idm_unet["in_channels"]),
        vdm_channels=int(vdm_unet["in_channels"]),
        idm_scaling=None if idm_vae is None else float(idm_vae.get("scaling_factor", 0.18215)),
        vdm_scaling=None if vdm_vae is None else float(vdm_vae.get("scaling_factor", 0.18215)),
        idm_schedule=schedule_from_config(idm_scheduler if idm_scheduler is not None else vdm_scheduler),
        vdm_schedule=schedule_from_config(vdm_scheduler),
        idm_name=idm_name,
        vdm_name=vdm_name,
    )
    width = idm_unet.get("cross_attention_dim")
    if idm_text_dim is not None and width is not None and int(width) != int(idm_text_dim):
        raise IncompatibleModels(
            f"the {idm_name} expects {width}-wide text embeddings but gets {idm_text_dim}-wide ones from the "
            f"{vdm_name}'s text encoder; choose an image model of the same family (SD1.5 with SD1.5)"
        )


# -- the common backbone ------------------------------------------------------------------------------------


class DiffusersBackbone(Backbone):
    """What every diffusers backbone shares: DDIM standard step, initial noise, chunked VAE decode, manifest.

    Subclasses load their models and set :attr:`vae`, :attr:`scheduler_config`, :attr:`latent_channels`,
    :attr:`device`, :attr:`dtype`, :attr:`locations`, :attr:`idm`, :attr:`vdm` and implement ``encode``.
    """

    example_prompt = "Two horses race across a grassy field at sunset."
    vae: Any
    scheduler_config: dict[str, Any]
    latent_channels: int = 4
    device: torch.device
    dtype: torch.dtype
    locations: dict[str, Location]
    loras: list[LoraSpec]
    decode_chunk_size: int = 16
    #: settings applied on top of the model's scheduler config for the standard step
    scheduler_overrides: dict[str, Any] = DDIM_OVERRIDES

    def make_scheduler(self):
        return ddim_scheduler(self.scheduler_config, **self.scheduler_overrides)

    def initial_latents(self, batch: int, frames: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        from diffusers.utils.torch_utils import randn_tensor

        shape = (batch, self.latent_channels, frames, height // self.vae_scale_factor, width // self.vae_scale_factor)
        return randn_tensor(shape, generator=generator, device=self.device, dtype=self.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return decode_video(self.vae, latents, chunk_size=self.decode_chunk_size)

    def describe(self) -> dict[str, Any]:
        return {
            "backbone": self.name,
            "models": {option: loc.source for option, loc in self.locations.items()},
            "model_paths": {option: loc.path for option, loc in self.locations.items()},
            "model_revisions": {option: loc.revision for option, loc in self.locations.items() if loc.revision},
            "weight_variants": dict(getattr(self, "variants", {})),
            "image_loras": [str(lora) for lora in getattr(self, "loras", [])],
            "device": str(self.device),
            "dtype": dtype_name(self.dtype),
        }

    def __repr__(self) -> str:
        models = ", ".join(f"{k}={v.source}" for k, v in self.locations.items())
        return f"<{type(self).__name__} {models} on {self.device} ({dtype_name(self.dtype)})>"


def to_device(*modules, device: torch.device) -> None:
    """Move modules to ``device``, in eval mode.

    Parameters keep ``requires_grad`` as loaded: every call runs under ``torch.no_grad()`` anyway, and turning
    it off switches some CPU kernels (3-D convolutions) to other algorithms, which would cost the bit-exact
    agreement with the stock pipelines.
    """
    for module in modules:
        if module is not None:
            module.to(device)
            module.eval()
