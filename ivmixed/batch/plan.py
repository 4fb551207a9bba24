"""The plan of a batch: every (prompt item, program, seed index) as a :class:`Job`, and the seed rule that pairs them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

from ..program import Program, parse
from ..prompts import PromptItem

BATCH_FORMATS = ("mp4", "gif", "npy")
SEED_MODES = ("item", "shared")
#: sampling settings passed through to Backbone.generate (and recorded in run.json)
GENERATE_KEYS = ("steps", "frames", "height", "width", "guidance", "zigzag", "substeps", "negative_prompt", "preset")
#: longest program folder name; longer ones are cut and end in a hash (as long as an item id's stem may be)
MAX_PROGRAM_DIR_BYTES = 160
_PROGRAM_DIR_SAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.+@=%-")


def derive_seed(seed: int, item_id: str, seed_index: int, mode: str = "item") -> int:
    """The seed of (item, seed index k): the same for every program, so programs are compared on the same noise.

    ``mode="item"``: ``int(sha256(f"{seed}/{item_id}/{k}").hexdigest()[:8], 16)``, in 0 .. 2³²−1 — each item gets
    its own noise, and an item keeps its seed when the prompt file is reordered or extended.
    ``mode="shared"``: ``seed + k`` — every item starts from the same K noises.
    """
    if mode == "shared":
        return seed + seed_index
    if mode != "item":
        raise ValueError(f"seed mode must be one of {', '.join(SEED_MODES)}, got {mode!r}")
    return int(hashlib.sha256(f"{seed}/{item_id}/{seed_index}".encode("utf-8")).hexdigest()[:8], 16)


def program_dir(program: Program | str) -> str:
    """The folder of a program's videos: its canonical text with ``:`` written ``_`` (other odd bytes ``~XX``).

    ``IV-IV`` -> ``IV-IV``; ``VV-VV@66.7%`` -> ``VV-VV@66.7%``; ``IV-IV:nf`` -> ``IV-IV_nf``. A name longer than
    :data:`MAX_PROGRAM_DIR_BYTES` (file names are limited to 255 bytes) is cut to its first bytes followed by
    ``~~`` and 16 hex digits of the SHA-256 of the full name: stable, and distinct for distinct programs. One-to-one,
    because canonical program text never contains ``_`` or ``~``, and an uncut name never contains ``~~``.
    """
    text = str(parse(program) if isinstance(program, str) else program)
    out = []
    for char in text:
        if char in _PROGRAM_DIR_SAFE:
            out.append(char)
        elif char == ":":
            out.append("_")
        else:
            out.extend(f"~{byte:02x}" for byte in char.encode("utf-8"))
    name = "".join(out)  # ASCII only
    if len(name) > MAX_PROGRAM_DIR_BYTES:
        digest = hashlib.sha256(name.encode("ascii")).hexdigest()[:16]
        name = f"{name[: MAX_PROGRAM_DIR_BYTES - len(digest) - 2]}~~{digest}"
    return name


@dataclass(frozen=True)
class Job:
    """One video of a batch: a prompt item through one program with one seed."""

    item: PromptItem
    program: Program
    seed_index: int
    seed: int
    group: int  # index of (item, seed index) in the plan; a shard holds whole groups
    folder: str  # program_dir(program)

    @property
    def name(self) -> str:
        """``<id>-<k>``: the file stem of the video inside its program folder."""
        return f"{self.item.stem}-{self.seed_index}"

    @property
    def key(self) -> str:
        """``<program folder>/<id>-<k>``: the video's identity in the index."""
        return f"{self.folder}/{self.name}"


def plan_jobs(
    items: Sequence[PromptItem],
    programs: Sequence[Program | str],
    *,
    seeds: int = 1,
    seed: int = 0,
    seed_mode: str = "item",
) -> list[Job]:
    """Every (item, seed index, program) in that order: the programs of one (item, seed) are neighbours."""
    programs = [parse(p) if isinstance(p, str) else p for p in programs]
    if not programs:
        raise ValueError("--programs: give at least one program")
    folders: dict[str, Program] = {}
    for program in programs:
        folder = program_dir(program)
        if folder in folders:
            raise ValueError(f"--programs: '{program}' is listed twice")
        folders[folder] = program
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"--seeds must be an integer >= 1 (videos per item and program), got {seeds!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed must be an integer >= 0, got {seed!r}")
    if seed_mode not in SEED_MODES:
        raise ValueError(f"--seed-mode must be one of {', '.join(SEED_MODES)}, got {seed_mode!r}")
    jobs = []
    for item_index, item in enumerate(items):
        for k in range(seeds):
            s = derive_seed(seed, item.id, k, seed_mode)
            group = item_index * seeds + k
            jobs.extend(Job(item, program, k, s, group, folder) for folder, program in folders.items())
    return jobs
