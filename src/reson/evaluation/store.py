"""The folder of a `reson eval` run: what it holds, and resuming it.

- `run.json`: the settings the folder belongs to (`FINGERPRINT_KEYS`); another model or other settings in the same
  folder is refused;
- `samples.jsonl`: one scored completion a line, appended batch by batch; a line cut short by a crash, or damaged,
  is skipped, counted and generated again;
- `results.json`: the summary; a folder holding one is finished.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from reson.core import folders
from reson.core.jsonl import read_jsonl, write_jsonl

logger = logging.getLogger(__name__)

# settings that change what a sample is; a folder holding samples made under others cannot be resumed
FINGERPRINT_KEYS = (
    "model",
    "datasets",
    "split",
    "num_problems",
    "seed",
    "template",
    "backend",
    "temperature",
    "top_p",
    "num_generations",
    "max_completion_length",
)


def read_samples(path: Path) -> list[dict]:
    """The finished sample records in `path`. A line cut short by a crash, or damaged, is skipped and counted, the
    file is rewritten without it (so later appends stay clean), and its sample is generated again."""
    lines = read_jsonl(path)
    if lines.skipped or lines.torn_tail:
        logger.warning(
            "%s: skipped %d damaged line(s)%s%s; their samples are generated again",
            path,
            len(lines.skipped),
            f" (lines {', '.join(map(str, lines.skipped[:10]))})" if lines.skipped else "",
            " and an unfinished last line" if lines.torn_tail else "",
        )
        write_jsonl(path, lines.records)
    return lines.records


def prepare(output_dir: Path, run: dict) -> dict | None:
    """Check the (locked) output folder against the settings ``run``: write them into a new folder, return the
    finished results when there is nothing to do, None when there is; FolderError for a folder holding another
    evaluation."""
    run_file, results_file = output_dir / folders.RUN_FILE, output_dir / folders.RESULTS_FILE
    samples_file = output_dir / folders.SAMPLES_FILE
    started = results_file.exists() or (samples_file.exists() and samples_file.stat().st_size > 0)
    if run_file.exists() and not started:  # settings written, nothing generated yet: take the new ones
        run_file.unlink()
    if run_file.exists():
        old = json.loads(run_file.read_text())
        diff = [k for k in FINGERPRINT_KEYS if old.get(k) != run.get(k)]
        if diff:
            shown = "; ".join(f"{k}: {old.get(k)!r} there, {run.get(k)!r} now" for k in diff)
            raise folders.FolderError(
                f"--output_dir {output_dir} holds an evaluation with other settings ({shown}); use another "
                "--output_dir, or --overwrite to replace it."
            )
        if results_file.exists():
            return json.loads(results_file.read_text())
    elif started:
        raise folders.FolderError(
            f"--output_dir {output_dir} holds results without a {folders.RUN_FILE}; use another --output_dir, or "
            "--overwrite."
        )
    else:
        folders.write_json(run_file, run)
    return None
