"""Prompt files for batch generation: .txt (one prompt a line), .csv / .tsv (a header row), .jsonl (one object a
line), .json (an array of objects or strings).

Every prompt becomes a :class:`PromptItem` with an *id* that names its videos on disk. Ids come from a
column (``id_column``, e.g. ``videoid`` in the ChronoMagic-Bench CSV, ``video_id`` in MSR-VTT caption
files) or, without one, from the item number (``00001``, ``00002``, … in file order, 1-based; in a .json
array the record's position, which a ``dimension`` filter keeps).

All problems are found before any model loads and reported as ``FILE:LINE: what is wrong`` by
:class:`PromptFileError`: an empty prompt, a missing column, a duplicate id, malformed JSON, a row
with the wrong number of fields. Blank lines at the end of a .txt file are ignored; any other blank line
of a .txt file is an empty prompt. Blank lines of a .jsonl file are skipped (they hold no record).

Column choice: ``prompt_column`` names the prompt column; without it the first of ``prompt``,
``caption``, ``text``, ``sentence`` present (case-insensitive) is used — in JSON records also ``prompt_en``.

**Benchmark prompt sets, as published** (read from the files users have, nothing downloaded):

- ChronoMagic-Bench ``prompts/Captions_ChronoMagic-Bench.csv`` (1649 prompts) and
  ``prompts/Captions_ChronoMagic-Bench-150.csv`` (150): header ``videoid,name,sub_category,main_category``,
  the prompt in ``name`` (quoted, with commas), the id in ``videoid`` (``3d_printing_19``, ``day2night_13.0``);
  read with ``prompt_column="name", id_column="videoid"``, so the videos are ``PROGRAM/<videoid>-<k>.mp4``
  (the benchmark's scorers want ``<videoid>.mp4``: one rename per seed). Its ``UMT/main/data/chronomagic_*.json`` arrays of
  ``{"caption_id", "video", "caption"}`` are read with ``id_column="caption_id"`` (``caption`` is guessed).
- VBench ``prompts/all_dimension.txt`` (946 lines, one prompt each; two prompts appear twice, under two
  dimensions), ``prompts/prompts_per_dimension/<dimension>.txt``, ``prompts/all_category.txt`` and
  ``prompts/prompts_per_category/<category>.txt``: plain .txt, ids are line numbers (VBench itself names a
  video ``<prompt>-<index>.mp4``). ``VBench_full_info.json`` (``vbench/`` in the repository): a JSON array of
  ``{"prompt_en", "dimension": [...], "auxiliary_info"}`` in the order of all_dimension.txt, so its item
  numbers are that file's line numbers; ``dimension="color"`` keeps the records of one dimension (the same
  prompts, in the same order, as ``prompts_per_dimension/color.txt``). VBench-2.0's ``VBench2_full_info.json``
  has the same keys.

So::

    read_prompts("Captions_ChronoMagic-Bench-150.csv", prompt_column="name", id_column="videoid")
    read_prompts("VBench_full_info.json", dimension="subject_consistency")
    read_prompts("msrvtt_val.csv", id_column="video_id")        # prompt column 'sentence' found by itself
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = [
    "FORMATS",
    "PROMPT_COLUMN_GUESSES",
    "PROMPT_KEY_GUESSES",
    "PromptFileError",
    "PromptItem",
    "items_from_prompts",
    "read_prompts",
    "file_stem",
]

#: prompt-file formats and the suffixes that select them
FORMATS = {".txt": "txt", ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
#: columns tried, in order, when no prompt column is named
PROMPT_COLUMN_GUESSES = ("prompt", "caption", "text", "sentence")
#: keys tried, in order, in JSON records (VBench's full-info files keep the prompt in ``prompt_en``)
PROMPT_KEY_GUESSES = (*PROMPT_COLUMN_GUESSES, "prompt_en")
#: longest file stem an id may give (file names are limited to 255 bytes; room is left for suffixes)
MAX_STEM_BYTES = 160

_SAFE = re.compile(r"[A-Za-z0-9._-]")


class PromptFileError(ValueError):
    """Bad input in a prompt file; ``str(error)`` is ``FILE:LINE: message`` (``FILE: message`` for the whole file)."""

    def __init__(self, path: str | os.PathLike, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")

    def __reduce__(self):
        return (type(self), (self.path, self.line, self.message))


@dataclass(frozen=True)
class PromptItem:
    """One prompt of a prompt file: its id, its text, and where it came from (``source:line``)."""

    id: str
    prompt: str
    source: str = "<list>"
    line: int = 0

    @property
    def stem(self) -> str:
        """The id as a file-name stem (see :func:`file_stem`)."""
        return file_stem(self.id)

    @property
    def prompt_sha(self) -> str:
        """A short hash of the prompt text; the batch index stores it to notice a prompt changed under an id."""
        return hashlib.sha256(self.prompt.encode("utf-8")).hexdigest()[:16]


def file_stem(item_id: str) -> str:
    """An id as a portable file-name stem: ``[A-Za-z0-9._-]`` kept, every other byte written ``~XX`` (hex).

    The mapping is one-to-one, so distinct ids never share a file; a leading dot is escaped too, so no
    video is a hidden file.
    """
    out = []
    for index, char in enumerate(item_id):
        if _SAFE.fullmatch(char) and not (index == 0 and char == "."):
            out.append(char)
        else:
            out.extend(f"~{byte:02x}" for byte in char.encode("utf-8"))
    return "".join(out)


def items_from_prompts(prompts: Sequence[str] | Iterable[PromptItem | str], *, source: str = "<list>") -> list[PromptItem]:
    """Prompt items from a Python list: strings get item-number ids (``00001`` …); PromptItems are kept.

    The same checks as for a file apply (empty prompt, duplicate id), with the list position as "line".
    """
    items = []
    for number, entry in enumerate(prompts, start=1):
        if isinstance(entry, PromptItem):
            items.append(entry)
        elif isinstance(entry, str):
            items.append(PromptItem(id=_item_number(number), prompt=entry.strip(), source=source, line=number))
        else:
            raise PromptFileError(source, number, f"expected a prompt string, got {type(entry).__name__}")
        if not items[-1].prompt.strip():
            raise PromptFileError(source, items[-1].line or number, "empty prompt")
    _check_ids(items)
    return items


def read_prompts(
    path: str | os.PathLike,
    *,
    prompt_column: str | None = None,
    id_column: str | None = None,
    format: str | None = None,
    dimension: str | None = None,
) -> list[PromptItem]:
    """Read a prompt file into :class:`PromptItem` values, in file order.

    Args:
        path: a .txt, .csv, .tsv, .jsonl / .ndjson or .json file (UTF-8, a byte-order mark is fine).
        prompt_column: the column (CSV/TSV) or key (JSON) of the prompt text; default: the first of
            :data:`PROMPT_COLUMN_GUESSES` (:data:`PROMPT_KEY_GUESSES` in JSON) present. Not used for .txt.
        id_column: the column or key of the item id (default: the item number ``00001`` …). Not used for .txt.
        format: ``txt``, ``csv``, ``tsv``, ``jsonl`` or ``json``, overriding the suffix.
        dimension: keep only the JSON records whose ``dimension`` list holds this name (VBench's full-info
            files); their ids stay their positions in the whole file.

    Raises:
        FileNotFoundError: no such file.
        PromptFileError: anything wrong inside the file, as ``FILE:LINE: message``.
    """
    path = Path(path)
    kind = format or FORMATS.get(path.suffix.lower())
    if kind not in set(FORMATS.values()):
        shown = f"format {format!r}" if format else f"file type '{path.suffix}'"
        raise PromptFileError(
            path, None, f"unknown prompt {shown}; use one of .txt, .csv, .tsv, .jsonl, .json (or name the format)"
        )
    if dimension is not None and kind not in ("json", "jsonl"):
        raise PromptFileError(path, None, f"a .{kind} prompt file has no dimension lists; dimension={dimension!r} needs VBench's full-info .json")
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} does not exist" if not path.exists() else f"prompt file {path} is not a file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise PromptFileError(path, line, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if kind == "txt":
        if prompt_column or id_column:
            raise PromptFileError(path, None, "a .txt prompt file has no columns; --prompt-column/--id-column need a .csv, .tsv, .jsonl or .json file")
        items = _read_txt(path, text)
    elif kind in ("csv", "tsv"):
        items = _read_table(path, text, "," if kind == "csv" else "\t", prompt_column, id_column)
    else:
        records = _jsonl_records(path, text) if kind == "jsonl" else _json_array_records(path, text)
        items = _read_records(path, records, prompt_column, id_column, dimension)
    if not items:
        raise PromptFileError(path, None, "no prompts in the file")
    _check_ids(items)
    return items


# -- formats -------------------------------------------------------------------------------------------


def _item_number(number: int) -> str:
    return f"{number:05d}"


def _read_txt(path: Path, text: str) -> list[PromptItem]:
    lines = text.splitlines()
    while lines and not lines[-1].strip():  # blank lines at the end are not prompts
        lines.pop()
    items = []
    for number, line in enumerate(lines, start=1):
        prompt = line.strip()
        if not prompt:
            raise PromptFileError(path, number, "empty prompt (a blank line; every line of a .txt prompt file is one prompt)")
        items.append(PromptItem(id=_item_number(number), prompt=prompt, source=str(path), line=number))
    return items


def _pick_column(
    path: Path, line: int, columns: Sequence[str], wanted: str | None, role: str, option: str, guesses: Sequence[str] = PROMPT_COLUMN_GUESSES
) -> str | None:
    if wanted is not None:
        if wanted in columns:
            return wanted
        raise PromptFileError(path, line, f"no {role} column '{wanted}'; the columns are: {', '.join(columns) or '(none)'}")
    if role != "prompt":
        return None
    lowered = {c.strip().lower(): c for c in columns}
    for guess in guesses:
        if guess in lowered:
            return lowered[guess]
    raise PromptFileError(
        path,
        line,
        f"no prompt column: none of {', '.join(guesses)} is present; the columns are: "
        f"{', '.join(columns) or '(none)'}; name one with {option}",
    )


def _read_table(path: Path, text: str, delimiter: str, prompt_column: str | None, id_column: str | None) -> list[PromptItem]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise PromptFileError(path, reader.line_num, f"malformed header: {exc}") from None
    if header is None:
        raise PromptFileError(path, None, "empty file: expected a header row naming the columns")
    header = [h.strip() for h in header]
    prompt_col = _pick_column(path, 1, header, prompt_column, "prompt", "--prompt-column")
    id_col = _pick_column(path, 1, header, id_column, "id", "--id-column")
    p_index = header.index(prompt_col)
    i_index = header.index(id_col) if id_col is not None else None
    items: list[PromptItem] = []
    previous_end = reader.line_num
    while True:
        start = previous_end + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise PromptFileError(path, start, f"malformed row: {exc}") from None
        previous_end = reader.line_num
        if len(row) <= 1 and not "".join(row).strip():  # a blank line
            if _only_blank_after(text, previous_end):
                break
            raise PromptFileError(path, start, "empty row (no prompt)")
        if len(row) != len(header):
            raise PromptFileError(path, start, f"the row has {len(row)} fields but the header has {len(header)}")
        prompt = row[p_index].strip()
        if not prompt:
            raise PromptFileError(path, start, f"empty prompt (column '{prompt_col}')")
        if i_index is None:
            item_id = _item_number(len(items) + 1)
        else:
            item_id = row[i_index].strip()
            if not item_id:
                raise PromptFileError(path, start, f"empty id (column '{id_col}')")
        items.append(PromptItem(id=item_id, prompt=prompt, source=str(path), line=start))
    return items


def _only_blank_after(text: str, line: int) -> bool:
    return not "".join(text.splitlines()[line - 1 :]).strip()


def _jsonl_records(path: Path, text: str) -> list[tuple[int, Any]]:
    """(line, record) of every non-blank line of a .jsonl file."""
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise PromptFileError(path, number, f"malformed JSON: {exc.msg} (column {exc.colno})") from None
    return records


_JSON_SPACE = " \t\n\r"


def _json_array_records(path: Path, text: str) -> list[tuple[int, Any]]:
    """(line where it starts, record) of every element of a .json file holding one array."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PromptFileError(path, exc.lineno, f"malformed JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(data, list):
        raise PromptFileError(path, None, f"expected a JSON array of prompts (objects or strings), got {'an' if isinstance(data, dict) else 'a'} {_json_type(data)}")
    decoder = json.JSONDecoder()
    records = []
    pos = text.index("[") + 1
    while True:  # the text parsed as an array: walk its elements to know the line each starts on
        while text[pos] in _JSON_SPACE:
            pos += 1
        if text[pos] == "]":
            break
        record, end = decoder.raw_decode(text, pos)
        records.append((text.count("\n", 0, pos) + 1, record))
        pos = end
        while text[pos] in _JSON_SPACE:
            pos += 1
        if text[pos] == ",":
            pos += 1
    return records


def _read_records(path: Path, records: Sequence[tuple[int, Any]], prompt_column: str | None, id_column: str | None, dimension: str | None) -> list[PromptItem]:
    """Prompt items from JSON records (objects or bare strings); the first object decides the guessed prompt key."""
    items: list[PromptItem] = []
    prompt_key, id_key = prompt_column, id_column
    dimensions: dict[str, None] = {}
    for position, (number, record) in enumerate(records, start=1):
        if isinstance(record, str):
            if prompt_column or id_column:
                raise PromptFileError(path, number, f"a bare string has no key '{prompt_column or id_column}'; write an object")
            if dimension is not None:
                raise PromptFileError(path, number, f"a bare string has no dimension list; dimension={dimension!r} needs objects with a 'dimension' key")
            prompt, item_id = record.strip(), _item_number(position)
        elif isinstance(record, dict):
            if prompt_key is None:  # the first record decides the guessed key; later ones must have it too
                prompt_key = _pick_column(path, number, list(record), None, "prompt", "--prompt-column", PROMPT_KEY_GUESSES)
            if prompt_key not in record:
                raise PromptFileError(path, number, f"no key '{prompt_key}'; the keys are: {', '.join(record) or '(none)'}")
            if dimension is not None:
                listed = record.get("dimension")
                if not isinstance(listed, list) or not all(isinstance(d, str) for d in listed):
                    raise PromptFileError(path, number, f"no 'dimension' list of names to select {dimension!r} by (VBench's full-info files have one)")
                dimensions.update(dict.fromkeys(listed))
                if dimension not in listed:
                    continue
            prompt = record[prompt_key]
            if not isinstance(prompt, str):
                raise PromptFileError(path, number, f"the prompt '{prompt_key}' is a {_json_type(prompt)}, expected text")
            prompt = prompt.strip()
            if id_key is None:
                item_id = _item_number(position)
            else:
                if id_key not in record:
                    raise PromptFileError(path, number, f"no id key '{id_key}'; the keys are: {', '.join(record)}")
                raw = record[id_key]
                if isinstance(raw, bool) or not isinstance(raw, (str, int)):
                    raise PromptFileError(path, number, f"the id '{id_key}' is a {_json_type(raw)}, expected text or an integer")
                item_id = str(raw).strip()
                if not item_id:
                    raise PromptFileError(path, number, f"empty id (key '{id_key}')")
        else:
            raise PromptFileError(path, number, f"expected a JSON object or string, got a {_json_type(record)}")
        if not prompt:
            raise PromptFileError(path, number, "empty prompt" + (f" (key '{prompt_key}')" if isinstance(record, dict) else ""))
        items.append(PromptItem(id=item_id, prompt=prompt, source=str(path), line=number))
    if dimension is not None and not items and records:
        raise PromptFileError(path, None, f"no prompt has the dimension {dimension!r}; the dimensions are: {', '.join(dimensions)}")
    return items


def _json_type(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null", int: "number", float: "number"}.get(type(value), type(value).__name__)


def _check_ids(items: Sequence[PromptItem]) -> None:
    """Refuse duplicate ids, ids that differ only in case (they collide on macOS and Windows), overlong ids."""
    seen: dict[str, PromptItem] = {}
    for item in items:
        stem = item.stem
        if len(stem.encode("utf-8")) > MAX_STEM_BYTES:
            raise PromptFileError(item.source, item.line or None, f"id {item.id[:40]!r}… is too long for a file name (at most {MAX_STEM_BYTES} bytes once escaped)")
        key = stem.casefold()
        first = seen.get(key)
        if first is not None:
            if first.id == item.id:
                raise PromptFileError(item.source, item.line or None, f"duplicate id '{item.id}' (first on line {first.line})")
            raise PromptFileError(
                item.source,
                item.line or None,
                f"id '{item.id}' differs from '{first.id}' (line {first.line}) only in case; their files would collide on "
                "case-insensitive file systems",
            )
        seen[key] = item
