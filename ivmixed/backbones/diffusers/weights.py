"""Where a backbone's weights are, and which of their files to load.

:func:`resolve_models` turns each model option (a local folder in diffusers layout, a single ``.safetensors``
file, or a hub id at a revision) into a :class:`Location`, looking in the Hugging Face cache without touching
the network; a model that is not cached is looked for on the hub only after one quick connection check
(:func:`hub_unreachable`). Every model that cannot be found is collected and reported in one
:class:`MissingWeights` error, before anything is loaded. :func:`plan_weights` then chooses each model's
files from those it publishes (fp16 where it has them and the run is fp16; a pickle-only model refused with
:class:`UnsafeWeights`).
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
    "explain_load_error",
]

logger = logging.getLogger(__name__)

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



# -- which files: variants and the pickle check --------------------------------------------------------------

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
