"""Reading a run's output folder for the report: the logged metric series, the canary completions, the run's facts.

It reads only files, so it works on a run still training and on a folder copied from another machine:

- ``trainer_state.json``: the newest of ``RUN/`` and its ``checkpoint-*/`` folders (by global step). Its log history
  holds what TRL's GRPOTrainer logs: ``reward``, ``reward_std``, ``rewards/<name>/mean``, ``completions/mean_length``,
  ``completions/clipped_ratio``, ``grad_norm``, ``loss``, ``emergence/*``, ...
- TensorBoard events under ``RUN`` (tags ``train/<metric>``), for the metrics and the steps the trainer state lacks: a
  run in progress has logged there since its last checkpoint.
- ``emergence.jsonl``: the canary completions, one JSON line each, with the step they were sampled at.
- ``train_config.yaml``: the run's rewards and weights, which bound the reward's mean ± std band.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from reson.core import folders
from reson.core.jsonl import read_jsonl
from reson.core.metrics import SEARCH_METRICS, completion_record, summarize
from reson.core.models import run_config
from reson.tools.report.plots import REWARD_RANGE, Series

logger = logging.getLogger(__name__)

# Once-per-run numbers TRL logs at the end of training (not per step): shown as run facts.
TOTAL_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos")
NOT_METRICS = ("step", "epoch", *TOTAL_KEYS)
RECORD_KEYS = ("think_used", "think_tokens", "self_correction", "accuracy", "format")
# reson.core.metrics.summarize keys plotted per canary step, as emergence/<key>
CANARY_KEYS = (
    "think_usage",
    "avg_think_tokens",
    "self_correction_rate",
    "self_correction_rate_among_thinking",
    "self_correction_rate_correct",
    "canary_accuracy",
    "format_compliance",
)
# of those, the ones averaged over the thinking completions only: their points carry that count
THINKING_KEYS = (
    "emergence/avg_think_tokens",
    "emergence/self_correction_rate_among_thinking",
    "emergence/rejection_rate_among_thinking",
)


class ReportError(ValueError):
    """A run folder, the output folder or a comparison input cannot be reported on; the message says what to change."""


@dataclass
class Run:
    """Everything the report shows, read from one output folder."""

    path: Path
    label: str  # its name on the page and in the legends
    series: dict[str, Series] = field(default_factory=dict)  # metric key -> {step: value}
    counts: dict[str, Series] = field(default_factory=dict)  # THINKING_KEYS -> {canary step: thinking completions}
    state_file: str | None = None  # the trainer_state.json used, relative to the run folder
    global_step: int | None = None
    max_steps: int | None = None
    totals: dict[str, float] = field(default_factory=dict)
    event_files: int = 0
    canaries: dict[int, list[dict]] = field(default_factory=dict)  # step -> emergence.jsonl rows, with RECORD_KEYS
    reward_range: tuple[float | None, float | None] = (REWARD_RANGE[0], None)  # what the total reward can take


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def find_trainer_state(run_dir: Path) -> tuple[Path, dict] | None:
    """The newest readable trainer_state.json of the run folder and its checkpoints: highest global step, then
    latest written. A file caught half-written by a run in progress is passed over."""
    best = None
    for path in [run_dir / folders.TRAINER_STATE, *run_dir.glob(f"checkpoint-*/{folders.TRAINER_STATE}")]:
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            if path.exists():
                logger.warning("skipping %s: %s", path, err)
            continue
        rank = (state.get("global_step") or 0, path.stat().st_mtime)
        if best is None or rank > best[0]:
            best = (rank, path, state)
    return None if best is None else (best[1], best[2])


def series_from_log_history(log_history: list[dict]) -> tuple[dict[str, Series], dict[str, float]]:
    """Per-step metric series and the end-of-training totals from a trainer state's log history."""
    series: dict[str, Series] = {}
    totals: dict[str, float] = {}
    for entry in log_history:
        step = entry.get("step")
        for key, value in entry.items():
            value = _number(value)
            if value is None:
                continue
            if key in TOTAL_KEYS:
                totals[key] = value
            elif key not in NOT_METRICS and step is not None:
                series.setdefault(key, {})[int(step)] = value
    return series, totals


def read_tensorboard(run_dir: Path) -> tuple[dict[str, Series], int]:
    """Scalar series from every TensorBoard event file under the run folder (`train/` prefix removed; a later
    file wins a step both hold, as after a resume), and the number of event files read."""
    files = sorted(run_dir.rglob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)
    if not files:
        return {}, 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, Series] = {}
    for path in files:
        accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0})
        try:
            accumulator.Reload()
        except Exception as err:  # a truncated file from a run in progress
            logger.warning("skipping %s: %s", path, err)
            continue
        for tag in accumulator.Tags().get("scalars", []):
            key = tag.removeprefix("train/")
            if key in NOT_METRICS or tag.startswith("eval/"):
                continue
            for event in accumulator.Scalars(tag):
                value = _number(event.value)
                if value is not None:
                    series.setdefault(key, {})[int(event.step)] = value
    return series, len(files)


def canary_record(row: dict) -> dict:
    """The emergence row with `reson.core.metrics.completion_record`'s keys (think_used, think_tokens,
    self_correction, accuracy, format), derived from its completion where the row does not carry them."""
    if all(key in row for key in RECORD_KEYS):
        return row
    graded = SimpleNamespace(accuracy=row.get("accuracy"), format=row.get("format", 0.0))
    record = completion_record(str(row.get("completion", "")), str(row.get("prompt", "")), graded)
    return {**record, **row}  # the row's own think_tokens (tokenizer tokens) win over the word count


def read_emergence(run_dir: Path) -> dict[int, list[dict]]:
    """The canary completions of emergence.jsonl as `canary_record`s grouped by step, each with a `canary` key (its
    own, else its `id`, else its place among its step's rows). Damaged lines and a half-written last one are
    skipped."""
    path = run_dir / folders.EMERGENCE_FILE
    lines = read_jsonl(path)
    if lines.skipped:
        logger.warning("%s: damaged line(s) %s skipped", path, ", ".join(map(str, lines.skipped)))
    canaries: dict[int, list[dict]] = {}
    without_step = 0
    for row in lines.records:
        step = row.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            without_step += 1
            continue
        rows = canaries.setdefault(step, [])
        rows.append(canary_record({"canary": row.get("id", len(rows)), **row}))
    if without_step:
        logger.warning("%s: %d line(s) without an integer 'step' skipped", path, without_step)
    return dict(sorted(canaries.items()))


def canary_series(canaries: dict[int, list[dict]]) -> tuple[dict[str, Series], dict[str, Series]]:
    """The emergence metrics per canary step, through `reson.core.metrics.summarize` (the definition training and
    evaluation use), for steps the logs lack; and, for `THINKING_KEYS`, the thinking completions behind each."""
    series: dict[str, Series] = {}
    counts: dict[str, Series] = {}
    for step, rows in canaries.items():
        summary = summarize(rows)
        summary["canary_accuracy"] = summary["accuracy"]
        for key in (*CANARY_KEYS, *SEARCH_METRICS):  # Countdown's search measures, where the canaries have them
            if key in summary:
                series.setdefault(f"emergence/{key}", {})[step] = float(summary[key])
        for key in THINKING_KEYS:
            counts.setdefault(key, {})[step] = sum(bool(row["think_used"]) for row in rows)
    return series, counts


def merge(primary: dict[str, Series], secondary: dict[str, Series]) -> dict[str, Series]:
    """Series of both; where both hold a key at a step, `primary` wins."""
    merged = {key: dict(values) for key, values in secondary.items()}
    for key, values in primary.items():
        merged.setdefault(key, {}).update(values)
    return {key: dict(sorted(values.items())) for key, values in sorted(merged.items())}


def drop_without_thinking(series: dict[str, Series], counts: dict[str, Series]) -> dict[str, Series]:
    """`series` without the points of `THINKING_KEYS` at canary steps where no completion thinks: a mean over no
    completion has no value (`summarize` and the logs say 0.0 there). Which steps: `counts` where it knows them,
    else the steps logged with think usage 0."""
    usage = series.get("emergence/think_usage", {})

    def thinks(key: str, step: int) -> bool:
        known = counts.get(key, {})
        return known[step] > 0 if step in known else usage.get(step, 1.0) > 0

    kept = dict(series)
    for key in THINKING_KEYS:
        values = {step: value for step, value in series.get(key, {}).items() if thinks(key, step)}
        if values:
            kept[key] = values
        else:
            kept.pop(key, None)
    return kept


def reward_range(run_dir: Path) -> tuple[float | None, float | None]:
    """What the run's total reward can take: its rewards, each in `REWARD_RANGE`, weighted as its train_config.yaml
    says (TRL weighs each 1.0 when no weights are given). From REWARD_RANGE's low end up, without a config."""
    config = run_config(run_dir)
    names = config.get("rewards") or []
    weights = [_number(w) for w in config.get("reward_weights") or [1.0] * len(names)]
    if not weights or None in weights:
        return REWARD_RANGE[0], None
    low, high = REWARD_RANGE
    return sum(min(w * low, w * high) for w in weights), sum(max(w * low, w * high) for w in weights)


def load_run(run_dir: str | Path, label: str | None = None) -> Run:
    """Read a run's output folder (`label`: its name on the page, by default the folder's name). Raises ReportError
    when the folder is missing or holds no logs."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ReportError(f"run folder {str(run_dir)!r} does not exist: pass the output_dir of a `reson train` run.")
    run = Run(path=path, label=label or path.resolve().name, reward_range=reward_range(path))
    found = find_trainer_state(path)
    state_series: dict[str, Series] = {}
    if found:
        state_path, state = found
        run.state_file = state_path.relative_to(path).as_posix()
        run.global_step, run.max_steps = state.get("global_step"), state.get("max_steps")
        state_series, run.totals = series_from_log_history(state.get("log_history") or [])
    tb_series, run.event_files = read_tensorboard(path)
    run.canaries = read_emergence(path)
    from_canaries, run.counts = canary_series(run.canaries)
    run.series = drop_without_thinking(merge(merge(state_series, tb_series), from_canaries), run.counts)
    if not run.series and not run.canaries:
        raise ReportError(
            f"run folder {str(run_dir)!r} holds no training logs (no {folders.TRAINER_STATE}, no TensorBoard events, "
            f"no {folders.EMERGENCE_FILE}): pass the output_dir of a `reson train` run that has logged at least one "
            "step."
        )
    if run.series:  # TensorBoard runs ahead of the last checkpoint while training
        logged = max(max(values) for values in run.series.values() if values)
        run.global_step = max(run.global_step or 0, logged)
    return run


def run_labels(paths: Sequence[str | Path]) -> list[str]:
    """Each run's name: its folder's name, with as many parent folders as it takes to tell the runs apart."""
    parts = [Path(p).resolve().parts for p in paths]
    for depth in range(1, max(map(len, parts)) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    raise ReportError(f"the same run folder is given twice: {', '.join(map(str, paths))}")
