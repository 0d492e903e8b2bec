"""JSON Lines files: the one reader and writers every part of the project uses.

Two kinds of file are read. *Inputs* (a dataset, prompts for ``reson chat``, completions for ``reson score``) are the
user's: a line that is not a JSON object is an error that names the file and the line (``strict=True``). *Records*
the project appends as it works (``samples.jsonl``, ``emergence.jsonl``) can end in a line cut short by a crash, or,
rarely, hold a damaged line: those are skipped and counted, and everything else is kept.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path


class JsonlError(ValueError):
    """A line of an input file that is not a JSON object; the message names the file and the line."""


@dataclass
class Lines:
    """What a file held: the records and the number of the line each came from, the numbers of the lines skipped as
    damaged (not a JSON object, not UTF-8), and whether the last line was cut short (no newline at the end and not
    valid JSON)."""

    records: list[dict] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    torn_tail: bool = False


def read_jsonl(path: str | Path, strict: bool = False) -> Lines:
    """Read ``path`` line by line (a missing file reads as empty). Blank lines are ignored.

    ``strict``: a line that is not a JSON object raises ``JsonlError`` naming the file, the line and the problem.
    Otherwise such lines are skipped and listed in ``Lines.skipped`` (a cut-short last line sets ``torn_tail``).
    """
    path = Path(path)
    out = Lines()
    if not path.is_file():
        return out
    data = path.read_bytes()
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"expected a JSON object, got {type(record).__name__}")
        except ValueError as error:
            if strict:
                problem = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
                raise JsonlError(
                    f"{path}, line {number}: not a JSON object ({problem}); fix or remove that line"
                ) from None
            if number == len(lines):  # no newline after it: a write cut short
                out.torn_tail = True
            else:
                out.skipped.append(number)
            continue
        out.records.append(record)
        out.numbers.append(number)
    return out


def append_jsonl(path: str | Path, records: Iterable[dict]) -> None:
    """Append ``records`` in one write and flush them to disk before returning (a crash then loses nothing written).

    A line cut short by an earlier crash is ended first, so it cannot swallow the first new record.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    with path.open("ab") as handle:
        if handle.tell() and _last_byte(path) != b"\n":
            text = "\n" + text
        handle.write(text.encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())


def write_jsonl(path: str | Path, records: Iterable[dict]) -> None:
    """Replace ``path`` with ``records`` atomically: readers see the old file or the new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:  # a write that failed leaves nothing behind
        tmp.unlink(missing_ok=True)


def _last_byte(path: Path) -> bytes:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1)
