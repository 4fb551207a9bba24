"""``DIR/index.jsonl``: the finished videos of a batch folder, appended by any number of processes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

if TYPE_CHECKING:
    from .plan import Job

try:  # POSIX record locks; absent on Windows, where the O_APPEND single write alone keeps lines whole
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

log = logging.getLogger("ivmixed.batch")

INDEX_FILE = "index.jsonl"


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover
        yield
        return
    fcntl.lockf(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.lockf(fd, fcntl.LOCK_UN)


def _pread(fd: int, length: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, length, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows; appends still go to the end (O_APPEND)
    return os.read(fd, length)


class Index:
    """``DIR/index.jsonl``: one JSON object per finished video, appended by any number of processes.

    Each record has at least ``key`` (``<program folder>/<id>-<k>``) and ``file`` (the video, relative to
    ``DIR``). :meth:`append_once` reads what other processes appended and writes the line only if its key is not
    listed yet, all under the lock, so every key is listed once even when two runs work on the same folder.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.records: dict[str, dict[str, Any]] = {}  # key -> last record seen
        self._offset = 0  # bytes of complete lines consumed so far
        self._bad = 0

    @property
    def keys(self) -> set[str]:
        return set(self.records)

    def refresh(self) -> list[dict[str, Any]]:
        """Read the lines appended since the last call; returns the new records."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return []
        try:
            return self._consume(fd)
        finally:
            os.close(fd)

    def read(self) -> dict[str, dict[str, Any]]:
        """Every key with its last record (malformed lines and an unfinished last line are skipped, and logged)."""
        self.refresh()
        return dict(self.records)

    def append_once(self, record: Mapping[str, Any]) -> bool:
        """Append ``record`` as one line unless its key is listed already; True when written.

        One ``os.write`` on an ``O_APPEND`` descriptor while holding an exclusive ``lockf`` lock; a torn last line
        (left by a crash mid-write) is closed with a newline first.
        """
        data = (json.dumps(record, ensure_ascii=True, separators=(",", ":"), default=str) + "\n").encode("ascii")
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            with _locked(fd):
                self._consume(fd)
                if record["key"] in self.records:
                    return False
                size = os.fstat(fd).st_size
                if size and _pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data
                written = os.write(fd, data)
                while written < len(data):  # a short write: finish it while still holding the lock
                    written += os.write(fd, data[written:])
                self._consume(fd)
                return True
        finally:
            os.close(fd)

    def _consume(self, fd: int) -> list[dict[str, Any]]:
        size = os.fstat(fd).st_size
        if size <= self._offset:
            return []
        data = _pread(fd, size - self._offset, self._offset)
        end = data.rfind(b"\n") + 1  # complete lines only: a line being written (or torn) waits
        new = []
        for raw in data[:end].split(b"\n"):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                key = record["key"]
                if not isinstance(key, str):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                self._bad += 1
                log.warning("%s: skipped a malformed line: %r", self.path, raw[:80])
                continue
            self.records[key] = record
            new.append(record)
        self._offset += end
        return new


def read_index(out_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The finished videos of a batch folder: key -> index record (the last one of each key)."""
    return Index(Path(out_dir) / INDEX_FILE).read()


def is_finished(out_dir: Path, index: Index, job: Job) -> bool:
    """Whether ``job`` is listed in ``index`` and its video is on disk."""
    record = index.records.get(job.key)
    return record is not None and (out_dir / record.get("file", "")).is_file()
