"""Score saved completions with the training rewards, so a reward change can be checked against real outputs.

    reson score completions.jsonl [--output scored.jsonl] [--timeout 5.0]

Each input line is a JSON object with ``completion`` (the generated text, or a message list) and ``answer`` or
``gold`` (the gold answer: a final answer, or a full GSM8K/MATH solution), and optionally ``prompt`` (so a
``<think>`` prefilled at the end of the prompt is taken into account). So `reson eval`'s ``samples.jsonl`` and a
run's ``emergence.jsonl`` can be rescored as they are. Prints accuracy and format statistics; ``--output`` gets every
input line back with ``accuracy`` and ``format`` (and ``extracted``, the answer span that was compared) added.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from reson.core.rewards import DEFAULT_TIMEOUT


class InputError(ValueError):
    """Bad input file: the message names the file, the line and what to change."""


def read_rows(path: Path) -> list[dict]:
    """Read and check a completions JSONL before any scoring."""
    if not path.is_file():
        raise InputError(f"{path}: no such file; pass a JSONL file with one {{'completion', 'answer'}} object a line")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputError(f"{path}:{number}: not valid JSON ({error.msg}); fix or remove that line") from None
            if not isinstance(row, dict):
                raise InputError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            missing = [
                key for key in ("completion", "answer") if key not in row and not (key == "answer" and "gold" in row)
            ]
            if missing:
                raise InputError(
                    f"{path}:{number}: missing {' and '.join(map(repr, missing))}; each line needs 'completion' (the "
                    "generated text) and 'answer' or 'gold' (the gold answer), and may have 'prompt'"
                )
            rows.append(row)
    if not rows:
        raise InputError(f"{path}: no completions in the file; add one JSON object a line")
    return rows


def _stats(rows: list[dict]) -> str:
    graded = [r["accuracy"] for r in rows if r["accuracy"] is not None]
    grades = Counter(r["format"] for r in rows)
    lines = [f"completions: {len(rows)}"]
    if graded:
        lines.append(f"accuracy: {sum(graded) / len(graded):.4f} ({int(sum(graded))}/{len(graded)} correct)")
    else:
        lines.append("accuracy: n/a (no gold answer could be parsed)")
    skipped = len(rows) - len(graded)
    if skipped:
        lines.append(f"skipped (gold answer unparseable): {skipped}")
    lines.append(f"format: mean {sum(r['format'] for r in rows) / len(rows):.4f}")
    for grade in (1.0, 0.5, 0.25, 0.0):
        lines.append(f"  format {grade:<4}: {grades.get(grade, 0) / len(rows):7.2%}  ({grades.get(grade, 0)})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="reson score",
        description="Score a JSONL of completions with the accuracy and format rewards and print their statistics.",
    )
    parser.add_argument("file", type=Path, help="JSONL: one {'completion', 'answer'[, 'prompt']} object a line")
    parser.add_argument("--output", "-o", type=Path, help="write every line back with accuracy and format added")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds allowed to verify one answer; an overrun scores 0.0 (default {DEFAULT_TIMEOUT})",
    )
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error(f"--timeout must be a positive number of seconds, got {args.timeout}")

    # Read and check the input
    try:
        rows = read_rows(args.file)
    except InputError as error:
        print(f"reson score: {error}", file=sys.stderr)
        return 2
    if args.output is not None and not args.output.parent.is_dir():
        print(f"reson score: {args.output.parent}: no such folder for --output; create it first", file=sys.stderr)
        return 2

    # Score
    from reson.core.rewards import score

    scores = score(
        [row["completion"] for row in rows],
        [row["answer"] if "answer" in row else row["gold"] for row in rows],
        [row.get("prompt") or "" for row in rows],
        timeout=args.timeout,
    )
    for row, result in zip(rows, scores, strict=True):
        row.update(accuracy=result.accuracy, format=result.format, extracted=result.extracted)

    # Report
    print(_stats(rows))
    if args.output is not None:
        with args.output.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"wrote {len(rows)} scored lines to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
