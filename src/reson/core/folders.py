"""Output folders and files: what a folder holds, who is writing into it, and never writing over work by accident.

``claim(folder, kind)`` is called by ``reson train`` and ``reson eval`` before anything is written. It locks the folder
(``fcntl.flock`` on ``.reson.lock``, released by the system when the process ends, however it ends), so a second run
into a busy folder stops with one line naming the first; then it looks at what the folder holds: a training run, an
evaluation, or nothing. Another kind of work is refused; the same kind is refused unless the caller resumes it or
was told to overwrite it. ``check_output_file`` does the same for single output files.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".reson.lock"
# What a training run's folder holds (`reson train`), besides the model and its checkpoints
RUN_CONFIG = "train_config.yaml"  # the resolved config, which loads back as a recipe
TRAINER_STATE = "trainer_state.json"  # TRL's log history and step (also in every checkpoint)
EMERGENCE_FILE = "emergence.jsonl"  # the canary completions, one JSON line each
# What an evaluation's folder holds (`reson eval`)
RUN_FILE = "run.json"  # the settings the samples were made under
SAMPLES_FILE = "samples.jsonl"  # one scored completion a line
RESULTS_FILE = "results.json"  # the summary
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # the errors of a full disk, a quota, a file-size limit
TRAINING = "a training run"
EVALUATION = "an evaluation"
# files that mark each kind of folder
_MARKS = {TRAINING: (TRAINER_STATE, RUN_CONFIG, EMERGENCE_FILE), EVALUATION: (RUN_FILE, RESULTS_FILE, SAMPLES_FILE)}


class FolderError(ValueError):
    """An output folder or file that cannot be written as asked; the message names it and says what to do."""


def holds(folder: str | Path) -> str | None:
    """``TRAINING``, ``EVALUATION`` or None (missing, empty, or nothing of ours) for ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    if any((folder / name).exists() for name in _MARKS[TRAINING]) or any(folder.glob("checkpoint-*")):
        return TRAINING
    if any((folder / name).exists() for name in _MARKS[EVALUATION]):
        return EVALUATION
    return None


class FolderLock:
    """An exclusive lock on a folder for the life of this process (or until ``release``)."""

    def __init__(self, folder: Path, handle):
        self.folder = folder
        self._handle = handle

    def name_holder(self, what: str) -> None:
        """Write who holds the lock into the lock file, for a second process to name in its refusal."""
        command = " ".join(["reson", *sys.argv[1:]]) if sys.argv else what
        self._handle.seek(0)
        self._handle.truncate()
        holder = f"pid {os.getpid()} on {socket.gethostname()} ({what}: {command[:200]}; since {time.ctime()})"
        self._handle.write(holder + "\n")
        self._handle.flush()

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the descriptor drops the flock
            self._handle = None


def lock(folder: str | Path, what: str) -> FolderLock:
    """Lock ``folder`` (created if missing) for ``what`` this process does; FolderError naming the holder if busy.
    The lock file names this process only once ``FolderLock.name_holder`` is called: `claim` calls it when the folder
    is accepted, so a refused command leaves the file naming the last process that held the folder."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_FILE, "a+")  # noqa: SIM115 - held open for the life of the lock
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise FolderError(
            f"{folder} is in use by {holder}: wait for it to finish, stop it, or choose another folder."
        ) from None
    return FolderLock(folder, handle)


def claim(folder: str | Path, kind: str, flag: str, resume: bool = False, overwrite: bool = False) -> FolderLock:
    """Lock ``folder`` for ``kind`` of work and check what it holds (module docstring). ``flag`` names the folder's
    option in messages. With ``overwrite``, the earlier work of the same kind is removed; ``resume`` keeps it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FolderError(f"{flag} {folder} is a file: give a folder (it is created if missing).")
    held = lock(folder, kind)
    try:
        found = holds(folder)
        if found is not None and found != kind:
            raise FolderError(f"{flag} {folder} holds {found}: write {kind} into another folder.")
        if found == kind and overwrite:
            _empty(folder)
        elif found == kind and not resume:
            raise FolderError(
                f"{flag} {folder} already holds {kind}: resume it, pass --overwrite to replace it, or choose another "
                "folder."
            )
    except BaseException:
        held.release()
        raise
    held.name_holder(kind)
    return held


def _empty(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def check_output_file(path: str | Path | None, flag: str, overwrite: bool = False) -> None:
    """An output file must not silently replace another: refused when it exists (unless ``overwrite``), when it is a
    folder, or when its folder is missing."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise FolderError(f"{flag} {path} is a folder: give a file name.")
    if not path.parent.is_dir():
        raise FolderError(f"{flag} {path}: no such folder {path.parent}; create it first.")
    if path.exists() and not overwrite:
        raise FolderError(f"{flag} {path} exists: pass --overwrite to replace it, or choose another name.")


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; moved onto ``path`` once the block ends without an error, else
    removed: a write cut short (a full disk) never replaces a good file with half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (`replacing`)."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, value) -> None:
    """Write ``value`` as JSON atomically (`replacing`)."""
    write_text(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


# How the libraries that write a run say a write failed for want of space: Python's OSError by its errno; safetensors
# by the same words ("No space left on device (os error 28)"); torch.save's zip writer by an iostream error, then
# "unexpected pos ..." (both seen on a full tmpfs).
_DISK_FULL_WORDS = (*(os.strerror(code) for code in DISK_FULL), "iostream error")


def disk_full_error(error: BaseException) -> str | None:
    """What says the disk is full in ``error`` or what it came from (``__cause__``, ``__context__``), None if nothing
    does."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in DISK_FULL:
            return seen.strerror
        said = next((words for words in _DISK_FULL_WORDS if words in str(seen)), None)
        if said is not None:
            return said
        seen = seen.__cause__ or seen.__context__
    return None


def disk_full(folder: str | Path, reason: str) -> str:
    """Says that writing into ``folder`` failed for want of space (``reason``: the error's words), and how much is
    free."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    return f"the disk of {folder} is full ({reason}; {free / 1e9:.2g} GB free)"
