"""An offline Hugging Face cache holding tiny random weights under the real repositories' file names and revisions.

A first run on a user's machine calls ``from_pretrained`` on the default hub ids and finds whatever those
repositories really publish: pickles on one branch, safetensors on a pull-request revision, fp16 files in
one repository and not in the next. :func:`build_cache` reproduces that, with no network:

- the layouts (file names, folders, revisions) come from a JSON file such as ``tests/data/hub_layouts.json``
  (see :func:`load_layouts` for its shape);
- every repository is written in the standard cache layout that ``huggingface_hub`` itself writes and reads:
  ``models--ORG--NAME/blobs/<sha256>``, ``snapshots/<commit>/<path>`` (relative symlinks to the blobs,
  copies where links are not possible), ``refs/main`` and ``refs/refs/pr/N`` holding the commit id;
- the content of every file comes from a tiny random model of the repository's kind, built with
  :mod:`ivmixed.testing.tiny`: configs and tokenizer files as that model saves them, weights as its state
  dict — in ``.safetensors`` where the real file is one, as a **pickle** (``torch.save``) where the real file
  is a ``.bin``/``.ckpt``/``.pth``, in fp16 for ``*.fp16.*`` files. Files no loader reads (READMEs,
  original-format checkpoints, the safety checker) get small stand-ins of the same format.

Point ``huggingface_hub.constants.HF_HUB_CACHE`` (or ``HF_HOME``/``HF_HUB_CACHE`` in a subprocess) at the
folder and set ``HF_HUB_OFFLINE=1``; the backbones then run with their default ids and no path option.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable

import torch

from . import tiny

__all__ = ["load_layouts", "build_cache", "commit_of", "repo_folder", "save_videocrafter2_unet"]

_WEIGHT = re.compile(r"(diffusion_pytorch_model|model|pytorch_model)(?:\.(\w+))?\.(safetensors|bin)")
_PICKLE_SUFFIXES = (".bin", ".ckpt", ".pth", ".pt")


def load_layouts(path: str | os.PathLike) -> dict[str, Any]:
    """Read a layouts file: ``{"repositories": {REPO_ID: {"tiny": KIND, "revisions": {REV: {"files": [{"path": ...}, ...]}}}}}``.

    ``tiny`` names the kind of tiny model whose files fill the repository (``sd15``, ``motion_adapter``,
    ``modelscope``, ``zeroscope``, ``videocrafter2_unet``, ``sdxl``, ``motion_adapter_sdxl``, ``lightning``,
    ``animatelcm``); optional ``model_index`` and ``config`` entries
    are written over the tiny model's ``model_index.json`` / root ``config.json`` (the real repositories'
    values that loaders read, such as class names).
    """
    data = json.loads(Path(path).read_text())
    for repo_id, repo in data["repositories"].items():
        if repo.get("tiny") not in _BUILDERS:
            raise ValueError(f"{path}: {repo_id} has tiny={repo.get('tiny')!r}; expected one of {', '.join(_BUILDERS)}")
    return data


def commit_of(repo_id: str, revision: str, recorded: str | None = None) -> str:
    """The commit id the cache files a revision under: the recorded one, else a stand-in derived from repo and revision."""
    if recorded:
        return recorded
    return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()


def repo_folder(cache: str | os.PathLike, repo_id: str) -> Path:
    """``CACHE/models--ORG--NAME``, the folder ``huggingface_hub`` keeps a model repository in."""
    return Path(cache) / ("models--" + repo_id.replace("/", "--"))


# -- tiny models of each kind -------------------------------------------------------------------------------


def _build_sd15(folder: Path, seed: int) -> None:
    tiny.save_sd15(folder, seed=seed)


def _build_modelscope(folder: Path, seed: int) -> None:
    tiny.save_modelscope(folder, seed=seed)


def _build_motion_adapter(folder: Path, seed: int) -> None:
    from diffusers import MotionAdapter

    torch.manual_seed(seed)
    MotionAdapter(
        block_out_channels=(8, 16),
        motion_layers_per_block=1,
        motion_num_attention_heads=2,
        motion_norm_num_groups=4,
        motion_max_seq_length=32,
        use_motion_mid_block=False,
    ).save_pretrained(str(folder))


def save_videocrafter2_unet(folder: Path, seed: int) -> None:
    """A tiny VideoCrafter2 UNet folder: the tiny 3-D UNet's weights in the fps-conditioned class (its fps branch random)."""
    from ivmixed_videocrafter2.unet import VideoCrafter2UNet

    stock = tiny.tiny_unet3d(seed=seed)
    torch.manual_seed(seed)
    unet = VideoCrafter2UNet(**{k: v for k, v in stock.config.items() if not k.startswith("_")}, fps_cond=True)
    unet.load_state_dict(stock.state_dict(), strict=False)  # the fps branch keeps its random init
    unet.save_pretrained(str(folder))


def _build_sdxl(folder: Path, seed: int) -> None:
    """A tiny ``StableDiffusionXLPipeline`` folder in the base repository's layout (the one the SDXL tests use)."""
    tiny.save_sdxl(folder, seed=seed)


def _build_motion_adapter_sdxl(folder: Path, seed: int) -> None:
    """The tiny SDXL motion adapter: two blocks of the tiny SDXL UNet's widths, no mid block, like the beta."""
    tiny.save_sdxl_motion_adapter(folder, seed=seed)


def _build_lightning(folder: Path, seed: int) -> None:
    """AnimateDiff-Lightning's single files: each an fp16 state dict of a (tiny) default-shaped MotionAdapter,
    a different one per step count (they are different distillations)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    for steps in (1, 2, 4, 8):
        state = {k: v.half().contiguous() for k, v in tiny.tiny_motion_adapter(seed + steps).state_dict().items()}
        for kind in ("diffusers", "comfyui"):  # no loader reads the ComfyUI files: the same tensors stand in for them
            save_file(state, str(folder / f"animatediff_lightning_{steps}step_{kind}.safetensors"))


def _build_animatelcm(folder: Path, seed: int) -> None:
    """AnimateLCM: a (tiny, default-shaped) MotionAdapter at the root and a LoRA for the tiny SD1.5 UNet."""
    tiny.save_motion_adapter(folder, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        sd15 = tiny.save_sd15(Path(tmp) / "sd15", seed=seed)
        tiny.save_peft_lora(folder / "AnimateLCM_sd15_t2v_lora.safetensors", sd15, seed=seed)


_BUILDERS = {
    "sd15": _build_sd15,
    "zeroscope": _build_modelscope,  # the same pipeline layout and latent space as ModelScope
    "modelscope": _build_modelscope,
    "motion_adapter": _build_motion_adapter,
    "videocrafter2_unet": save_videocrafter2_unet,
    "sdxl": _build_sdxl,
    "motion_adapter_sdxl": _build_motion_adapter_sdxl,
    "lightning": _build_lightning,
    "animatelcm": _build_animatelcm,
}


# -- file contents --------------------------------------------------------------------------------------------


def _state_dict_of(folder: Path, component: str) -> dict[str, torch.Tensor] | None:
    from safetensors.torch import load_file

    base = folder / component if component else folder
    for name in ("diffusion_pytorch_model.safetensors", "model.safetensors"):
        if (base / name).is_file():
            return load_file(str(base / name))
    return None


def _any_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    for component in ("unet", "", "text_encoder", "vae"):
        found = _state_dict_of(folder, component)
        if found is not None:
            return found
    raise FileNotFoundError(f"no weights in {folder}")


def _write_weights(path: Path, state: dict[str, torch.Tensor], *, half: bool) -> None:
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in state.items()}
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        torch.save(state, str(path))  # a pickle, like the real file
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))


def _content(relpath: str, source: Path, repo: dict[str, Any], target: Path) -> None:
    """Write the stand-in of the real file ``relpath`` at ``target``, from the tiny model in ``source``."""
    component, _, name = relpath.rpartition("/")
    match = _WEIGHT.fullmatch(name)
    if relpath == "model_index.json" and (source / relpath).is_file():
        index = json.loads((source / relpath).read_text())
        index.update(repo.get("model_index", {}))
        target.write_text(json.dumps(index, indent=2))
    elif relpath == "config.json" and (source / relpath).is_file():
        config = json.loads((source / relpath).read_text())
        # the recorded real values that loaders read; sizes stay the tiny model's so that its weights fit
        config.update({k: v for k, v in repo.get("config", {}).items() if k not in ("cross_attention_dim",)})
        target.write_text(json.dumps(config, indent=2))
    elif (source / relpath).is_file() and not match:
        shutil.copyfile(source / relpath, target)
    elif match:
        state = _state_dict_of(source, component)
        if state is None:  # a component the tiny model does not have (the safety checker): a small stand-in
            state = {"stand_in.weight": torch.zeros(2, 2)}
        _write_weights(target, state, half=match.group(2) == "fp16")
    elif name.lower().endswith((".safetensors", *_PICKLE_SUFFIXES)):  # an original-format single checkpoint
        _write_weights(target, _any_state_dict(source), half="fp16" in name.lower())
    elif name.endswith(".json"):
        target.write_text("{}")
    else:
        target.write_text(f"stand-in for {relpath}\n")


def _store(repo_dir: Path, commit: str, relpath: str, written: Path) -> None:
    data = written.read_bytes()
    blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
    if not blob.exists():
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(written, blob)
    link = repo_dir / "snapshots" / commit / relpath
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        link.symlink_to(os.path.relpath(blob, link.parent))
    except OSError:  # no symlinks here (as huggingface_hub does then): a copy
        shutil.copyfile(blob, link)


def build_cache(
    cache: str | os.PathLike,
    layouts: dict[str, Any],
    repos: Iterable[str] | None = None,
    *,
    seed: int = 40,
) -> dict[str, dict[str, str]]:
    """Write the repositories of ``layouts`` (all, or those in ``repos``) into the Hugging Face cache folder ``cache``.

    Returns ``{repo_id: {revision: commit}}``. Each repository's tiny model is built once (seeds
    ``seed``, ``seed + 1``, ... in the order of ``layouts``), and every revision's files are filled from it.
    """
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    wanted = set(repos) if repos is not None else None
    commits: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for index, (repo_id, repo) in enumerate(layouts["repositories"].items()):
            if wanted is not None and repo_id not in wanted:
                continue
            source = Path(tmp) / f"source{index}"
            _BUILDERS[repo["tiny"]](source, seed + index)
            repo_dir = repo_folder(cache, repo_id)
            commits[repo_id] = {}
            for revision, tree in repo["revisions"].items():
                commit = commit_of(repo_id, revision, tree.get("commit"))
                staging = Path(tmp) / "staging"
                staging.mkdir(exist_ok=True)
                for entry in tree["files"]:
                    written = staging / Path(entry["path"]).name  # the real name: its suffix decides the format
                    _content(entry["path"], source, repo, written)
                    _store(repo_dir, commit, entry["path"], written)
                    written.unlink()
                ref = repo_dir / "refs" / revision  # refs/main, refs/refs/pr/N: as huggingface_hub files them
                ref.parent.mkdir(parents=True, exist_ok=True)
                ref.write_text(commit)
                commits[repo_id][revision] = commit
    return commits
