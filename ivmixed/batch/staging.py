"""Staging folders and claims in ``DIR/.partial``: how processes sharing a batch folder tell live work from a dead process's leftovers."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
from pathlib import Path

from .store import PARTIAL_DIR

try:  # POSIX record locks; absent on Windows
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

_LOCK_NAME = "lock"
_SETUP_PREFIX = ".new-"
_CLAIM_PREFIX = "claim-"
_SETUP_GRACE_S = 60.0  # a staging folder still being set up is left alone this long


class Staging:
    """This process's staging folder ``DIR/.partial/<host>-<pid>-<random>/``, holding a lock while the process lives.

    The lock (``lockf`` on ``lock`` inside) is released by the kernel when the process dies, however it dies, so
    another process can tell a dead process's leftovers (lockable) from a live one's (locked).
    """

    def __init__(self, out_dir: Path) -> None:
        self.partial = out_dir / PARTIAL_DIR
        self._fd: int | None = None
        self.root: Path | None = None
        self._claims: dict[Path, int] = {}  # claim file -> the descriptor holding its lock

    def __enter__(self) -> "Staging":
        from ..errors import WriteFailed
        from ..io import describe_os_error

        try:
            self._enter()
        except OSError as exc:  # a full disk, a folder made read-only
            self.__exit__(None, None, None)
            raise WriteFailed(exc.errno, f"cannot create the staging folder in {self.partial}: {describe_os_error(exc)}") from None
        return self

    def _enter(self) -> None:
        import socket
        import tempfile

        for attempt in range(5):  # another process may remove an empty .partial between our two calls
            try:
                self.partial.mkdir(parents=True, exist_ok=True)
                setup = Path(tempfile.mkdtemp(prefix=_SETUP_PREFIX, dir=self.partial))
                break
            except FileNotFoundError:
                if attempt == 4:
                    raise
        self.root = setup  # removed by __exit__ if what follows fails
        self._fd = os.open(setup / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        host = "".join(c if c.isalnum() or c in "-." else "_" for c in socket.gethostname())[:40]
        root = self.partial / f"{host}-{os.getpid()}-{setup.name[len(_SETUP_PREFIX):]}"
        os.rename(setup, root)  # the lock stays with the open file
        self.root = root

    def claim(self, key: str) -> tuple[int, Path] | None:
        """Claim the video ``key`` for this process (a ``lockf`` lock on ``.partial/claim-<hash>``); None when another
        live process holds it. The kernel drops the lock of a process that dies, so its claims free themselves."""
        path = self.partial / f"{_CLAIM_PREFIX}{hashlib.sha256(key.encode('utf-8')).hexdigest()[:24]}"
        if fcntl is None:  # pragma: no cover
            return (-1, path)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return None
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._claims[path] = fd
                return (fd, path)
            os.close(fd)  # the file was removed by its last holder in between: claim the new one

    def release(self, claim: tuple[int, Path]) -> None:
        """Give a claim up: remove its file (still holding the lock, so a waiting process sees it gone) and unlock."""
        fd, path = claim
        if self._claims.pop(path, None) is None and fd >= 0:
            return  # released already
        with contextlib.suppress(OSError):
            path.unlink()
        if fd >= 0:
            os.close(fd)

    def others(self) -> bool:
        """Whether another live process stages videos in this folder (is working on it now)."""
        for entry in self.partial.iterdir():
            if entry == self.root or not entry.is_dir() or entry.name.startswith(_SETUP_PREFIX):
                continue
            if _lock_held(entry / _LOCK_NAME):
                return True
        return False

    def fresh(self) -> Path:
        """An empty folder for the next video."""
        job = self.root / "job"
        shutil.rmtree(job, ignore_errors=True)
        job.mkdir()
        return job

    def __exit__(self, *exc) -> None:
        for path, fd in list(self._claims.items()):  # left by an interrupt in the middle of a release
            self.release((fd, path))
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(OSError):
            self.partial.rmdir()  # only when no other process stages anything


def remove_dead_staging(out_dir: Path) -> int:
    """Remove the staging folders of processes that died (their lock is free); returns how many."""
    partial = out_dir / PARTIAL_DIR
    if not partial.is_dir() or fcntl is None:
        return 0
    removed = 0
    for entry in list(partial.iterdir()):
        if entry.name.startswith(_CLAIM_PREFIX) and not entry.is_dir():
            _remove_free_claim(entry)
            continue
        if not entry.is_dir():
            continue
        if entry.name.startswith(_SETUP_PREFIX):
            with contextlib.suppress(OSError):
                if time.time() - entry.stat().st_mtime < _SETUP_GRACE_S:
                    continue
        try:
            fd = os.open(entry / _LOCK_NAME, os.O_RDWR)
        except FileNotFoundError:
            fd = None
        except OSError:
            continue
        try:
            if fd is not None:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises while the owner lives
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
        except OSError:
            continue
        finally:
            if fd is not None:
                os.close(fd)
    with contextlib.suppress(OSError):
        partial.rmdir()
    return removed


def _lock_held(path: Path) -> bool:
    """Whether another process holds the ``lockf`` lock on ``path`` (False when the file is gone)."""
    if fcntl is None:  # pragma: no cover
        return False
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the lock just taken
    return False


def _remove_free_claim(path: Path) -> None:
    """Remove the claim file of a process that died while making that video (its lock is free)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink()  # while holding the lock; a process claiming it now sees another file and claims that
    except OSError:
        pass
    finally:
        os.close(fd)
