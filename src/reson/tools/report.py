"""`reson report`: plots and a one-page HTML timeline of one or more GRPO runs, to watch reasoning emerge.

    reson report outputs/miniature
    reson report outputs/qwen2.5-3b-gsm8k --compare outputs/compare.md --output_dir reports/qwen3b
    reson report runs/grpo-seed1 runs/grpo-seed2 --output_dir reports/seeds

It reads only the runs' output folders, so it works on a run still training and on a folder copied from another
machine:

- ``trainer_state.json``: the newest of ``RUN/`` and its ``checkpoint-*/`` folders (by global step). Its log history
  holds what TRL's GRPOTrainer logs: ``reward``, ``reward_std``, ``rewards/<name>/mean``, ``completions/mean_length``,
  ``completions/clipped_ratio``, ``grad_norm``, ``loss``, ``emergence/*``, ...
- TensorBoard events under ``RUN`` (tags ``train/<metric>``), for the metrics and the steps the trainer state lacks: a
  run in progress has logged there since its last checkpoint.
- ``emergence.jsonl``: the canary completions, one JSON line each, with the step they were sampled at.
- ``train_config.yaml``: the run's rewards and weights, which bound the reward's mean ± std band.

It writes ``RUN/report/`` (or ``--output_dir``, which a report of several runs needs): each plot as a 2x-resolution PNG
and an SVG, and ``report.html``, a single self-contained page (the SVGs embedded as data URIs) with the plots, a table
of the numbers, the aha steps and, per run, the canary timeline: the completions of the canaries that show the change,
with the thinking and the answer shown apart, right and wrong marked. Model output is untrusted: the page escapes all
of it. Several runs (seeds, recipes) are overlaid on the same plots, one colour per run, the legends naming each run
folder; the table has a group of columns per run. Shares (accuracy, rates, clipped ratio) are in percent everywhere:
plots, table and text (`reson.tools.plots`).

The aha steps of a run:

- *think*: the first canary step where more than half the canary completions have a closed, non-empty think block.
- *self-correction take-off*: the first canary step where the self-correction rate among thinking completions
  (``emergence/self_correction_rate_among_thinking``) is at least twice its first value and at least 10 %. Its first
  value is the rate at the first canary step where a completion thinks; steps where none does have no rate (without
  emergence.jsonl, the steps logged with think usage 0 are passed over likewise). The plain rate is not used: it rises
  with think usage alone.
- *repaired slip*: the first canary step where a right answer's thinking holds a self-correction phrase
  (`reson.core.metrics.has_self_correction`). Oat-Zero's caution applies: a reflection keyword alone proves little,
  so the page shows that completion, the phrase highlighted, to read.

The timeline follows the canaries that show the change rather than the first few: the first canary to think (close
a think block), and the first to self-correct (at the first step where any completion's thinking holds a
self-correction phrase: a right one first, then one that closed its block), each with why it was picked, then the
others in order up to ``--samples`` per step.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import logging
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from reson.core import folders
from reson.core.help import HelpFormatter
from reson.core.jsonl import read_jsonl
from reson.core.metrics import completion_record, self_correction_phrases, summarize
from reson.core.models import run_config
from reson.core.parsing import extract_answer, split_completion
from reson.evaluation.compare import CompareError, compare
from reson.tools.plots import PLOTS, REWARD_RANGE, Curves, Marker, Series, colour, draw, is_percent, save, shown

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"
# Once-per-run numbers TRL logs at the end of training (not per step): shown as run facts.
TOTAL_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos")
NOT_METRICS = ("step", "epoch", *TOTAL_KEYS)
THINK_AHA_SHARE = 0.5  # think usage must pass this share of the canary completions
TAKEOFF_FACTOR = 2.0  # the self-correction take-off: at least this times the first rate among thinking completions,
TAKEOFF_MIN = 0.10  # and at least this share
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
THINKING_KEYS = ("emergence/avg_think_tokens", "emergence/self_correction_rate_among_thinking")
AMONG_THINKING = "emergence/self_correction_rate_among_thinking"


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


@dataclass(frozen=True)
class Pick:
    """A canary the timeline follows, and why."""

    canary: object  # its `canary` index (or `id`) in emergence.jsonl
    step: int  # where it first showed what it was picked for
    tag: str  # a few words, on each of its completions
    why: str


# ---------------------------------------------------------------------------------------------------------------------
# Reading a run
# ---------------------------------------------------------------------------------------------------------------------


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
    record = completion_record(
        str(row.get("completion", "")), str(row.get("prompt", "")), graded, row.get("think_tokens")
    )
    return {**record, **row}


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
        for key in CANARY_KEYS:
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


# ---------------------------------------------------------------------------------------------------------------------
# Aha steps and the canaries to follow
# ---------------------------------------------------------------------------------------------------------------------


def takeoff_step(rates: Series) -> int | None:
    """The first step whose rate is at least `TAKEOFF_FACTOR` times the first one and at least `TAKEOFF_MIN`.
    `rates`: the self-correction rate among thinking completions at the canary steps where some completion thinks."""
    if not rates:
        return None
    first = rates[min(rates)]
    threshold = max(TAKEOFF_FACTOR * first, TAKEOFF_MIN)
    return next((step for step, rate in sorted(rates.items()) if rate >= threshold), None)


def _first(
    canaries: dict[int, list[dict]], test: Callable[[dict], bool], rank: Callable[[dict], tuple] | None = None
) -> tuple[int, dict] | None:
    """The first step with a row passing `test`, and that row (the first of the best by `rank`)."""
    for step, rows in canaries.items():
        found = [row for row in rows if test(row)]
        if found:
            return step, max(found, key=rank) if rank else found[0]
    return None


def repaired_slip(canaries: dict[int, list[dict]]) -> tuple[int, dict] | None:
    """The first right canary completion whose thinking holds a self-correction phrase, and its step."""
    return _first(canaries, lambda row: bool(row["self_correction"]) and row.get("accuracy") == 1.0)


def aha_steps(run: Run) -> dict[str, int | None]:
    """The run's aha steps (module docstring): `think`, `takeoff` and `repaired_slip`. From emergence.jsonl when
    present, else from the logged emergence metrics."""
    if run.canaries:
        think = next(
            (
                step
                for step, rows in run.canaries.items()
                if sum(bool(row["think_used"]) for row in rows) > THINK_AHA_SHARE * len(rows)
            ),
            None,
        )
        slip = repaired_slip(run.canaries)
        slip_step = slip[0] if slip else None
    else:
        usage = run.series.get("emergence/think_usage", {})
        think = next((step for step, share in usage.items() if share > THINK_AHA_SHARE), None)
        rate = run.series.get("emergence/self_correction_rate_correct", {})
        slip_step = next((step for step, value in rate.items() if value > 0), None)
    rates = run.series.get(AMONG_THINKING, {})  # only where some completion thinks (`drop_without_thinking`)
    return {"think": think, "takeoff": takeoff_step(rates), "repaired_slip": slip_step}


def _phrase(text: str | None) -> str:
    """The first self-correction phrase in `text` ('' when none)."""
    found = self_correction_phrases(text)
    return found[0].group(0) if found else ""


def _verdict(row: dict) -> str:
    return {1.0: "right", 0.0: "wrong"}.get(row.get("accuracy"), "ungraded")


def pick_canaries(canaries: dict[int, list[dict]]) -> list[Pick]:
    """The canaries that show the change (module docstring): the first to think and the first to self-correct, each
    with why; one pick when they are the same canary, none before any completion thinks or self-corrects."""
    picks: list[Pick] = []
    thinks = _first(canaries, lambda row: bool(row["think_used"]))
    if thinks:
        step, row = thinks
        picks.append(Pick(row["canary"], step, "first to think", f"the first to close a think block, at step {step}"))
    corrects = _first(
        canaries,
        lambda row: bool(row["self_correction"]),
        rank=lambda row: (row.get("accuracy") == 1.0, bool(row["think_used"])),
    )
    if corrects:
        step, row = corrects
        think = split_completion(str(row.get("completion", "")), str(row.get("prompt", ""))).think
        why = f"the first to self-correct: “{_phrase(think)}” in its thinking at step {step}, answer {_verdict(row)}"
        same = next((i for i, pick in enumerate(picks) if pick.canary == row["canary"]), None)
        if same is None:
            picks.append(Pick(row["canary"], step, "first to self-correct", why))
        else:
            first = picks[same]
            picks[same] = Pick(first.canary, first.step, f"{first.tag}, then to self-correct", f"{first.why}; {why}")
    return picks


def markers(aha: dict[str, int | None]) -> list[Marker]:
    """The aha steps drawn on the emergence plots."""
    drawn = [
        ("think", f"think usage passes {100 * THINK_AHA_SHARE:g} %", "--"),
        ("takeoff", "self-correction takes off", ":"),
    ]
    return [Marker(aha[key], label, style) for key, label, style in drawn if aha[key] is not None]


# ---------------------------------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------------------------------


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _inline_markdown(text: str) -> str:
    """Escaped text with markdown's **bold** and `code` spans rendered (the only markup `reson compare` uses)."""
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", _esc(text))
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.4g}"


def value_text(key: str, value: float) -> str:
    """A logged value as the page shows it: 4 significant digits, shares in percent."""
    return _fmt(shown(key, value)) + (" %" if is_percent(key) else "")


def _cell(key: str, value: float | None, run: int) -> str:
    if value is None:
        return f'<td data-run="{run}"></td>'
    return f'<td data-run="{run}" data-value="{shown(key, value)!r}">{_esc(value_text(key, value))}</td>'


SUMMARY_COLUMNS = ("points", "steps", "first", "last", "min", "max")


def summary_table(runs: Sequence[Run]) -> str:
    """Points, step range, first, last, min and max of every logged metric, a group of columns per run."""
    keys = sorted({key for run in runs for key, values in run.series.items() if values})
    head = '<tr><th rowspan="2">metric</th>' + "".join(
        f'<th colspan="{len(SUMMARY_COLUMNS)}" data-run="{i}">{_esc(run.label)}</th>' for i, run in enumerate(runs)
    )
    head += "</tr><tr>" + "".join(f"<th>{name}</th>" for _ in runs for name in SUMMARY_COLUMNS) + "</tr>"
    rows = []
    for key in keys:
        cells = []
        for i, run in enumerate(runs):
            values = run.series.get(key)
            if not values:
                cells.append(f'<td data-run="{i}"></td>' * len(SUMMARY_COLUMNS))
                continue
            steps = list(values)
            cells.append(f'<td data-run="{i}">{len(values)}</td><td data-run="{i}">{steps[0]}–{steps[-1]}</td>')
            numbers = (values[steps[0]], values[steps[-1]], min(values.values()), max(values.values()))
            cells.append("".join(_cell(key, value, i) for value in numbers))
        rows.append(f'<tr data-key="{_esc(key)}"><th scope="row">{_esc(key)}</th>{"".join(cells)}</tr>')
    return f'<table class="numbers" id="summary"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def steps_table(run: Run, index: int, keys: list[str]) -> str:
    """The plotted metrics of one run at every logged step."""
    keys = [key for key in keys if run.series.get(key)]
    steps = sorted({step for key in keys for step in run.series[key]})
    head = "<tr><th>step</th>" + "".join(f'<th data-key="{_esc(k)}">{_esc(k)}</th>' for k in keys) + "</tr>"
    body = "".join(
        f'<tr data-step="{step}"><th scope="row">{step}</th>'
        + "".join(_cell(k, run.series[k].get(step), index) for k in keys)
        + "</tr>"
        for step in steps
    )
    return (
        f'<table class="numbers steps" id="steps-{index}" data-run="{index}"><thead>{head}</thead>'
        f"<tbody>{body}</tbody></table>"
    )


def _highlighted(text: str) -> str:
    """Escaped `text` with its self-correction phrases in <mark>."""
    parts, end = [], 0
    for found in self_correction_phrases(text):
        parts += [_esc(text[end : found.start()]), f"<mark>{_esc(found.group(0))}</mark>"]
        end = found.end()
    return "".join(parts) + _esc(text[end:])


def _completion_html(row: dict, tag: str = "") -> str:
    """One canary completion: its facts, the question, the thinking (self-correction phrases marked) and the
    answer."""
    completion, prompt = str(row.get("completion", "")), str(row.get("prompt", ""))
    parsed = split_completion(completion, prompt)
    verdict = _verdict(row)
    mark = {"right": "✓ right", "wrong": "✗ wrong", "ungraded": "? ungraded"}[verdict]
    extracted = row.get("extracted", extract_answer(parsed.answer))
    gold = row.get("answer", row.get("gold"))
    facts = [f'<span class="mark">{mark}</span>', f"canary {_esc(row['canary'])}"]
    if tag:
        facts.append(f'<span class="pick">{_esc(tag)}</span>')
    if gold is not None:
        facts.append(f"gold <code>{_esc(gold)}</code>")
    facts.append(f"extracted <code>{_esc(extracted) if extracted is not None else '—'}</code>")
    if row["think_used"]:
        facts.append(f"{_esc(row['think_tokens'])} think tokens")
    if row["self_correction"]:
        facts.append('<span class="flag">self-correction</span>')
    question = row.get("question")
    parts = [f'<div class="sample {verdict}" data-canary="{_esc(row["canary"])}">']
    parts.append(f'<div class="facts">{" · ".join(facts)}</div>')
    if question:
        parts.append(f'<div class="question">{_esc(question)}</div>')
    elif prompt:
        parts.append(f'<details><summary>prompt</summary><pre class="prompt">{_esc(prompt)}</pre></details>')
    if parsed.think is not None:
        state = "" if parsed.closed else " (never closed)"
        parts.append(f'<div class="label">thinking{state}</div><pre class="think">{_highlighted(parsed.think)}</pre>')
    parts.append(f'<div class="label">answer</div><pre class="answer">{_esc(parsed.answer)}</pre></div>')
    return "".join(parts)


# the numbers shown above each canary step's completions
CANARY_FACTS = (
    ("emergence/think_usage", "think usage"),
    ("emergence/canary_accuracy", "accuracy"),
    ("emergence/self_correction_rate_among_thinking", "self-correcting among thinking"),
    ("emergence/avg_think_tokens", "tokens per think block"),
)


def canary_html(run: Run, index: int, aha: dict[str, int | None], samples: int) -> str:
    """The run's canary timeline: which canaries it follows and why, its first repaired slip, then for each canary
    step its numbers and `samples` completions, the picked canaries first."""
    picks = pick_canaries(run.canaries)
    tags = {pick.canary: pick.tag for pick in picks}
    if picks:
        why = "".join(f"<li>canary {_esc(pick.canary)}: {_esc(pick.why)}</li>" for pick in picks)
        parts = [f'<p>The timeline follows the canaries that show the change:</p><ul class="picks">{why}</ul>']
    else:
        parts = [
            '<p class="muted">No canary completion thinks or self-corrects yet: the first canaries are shown.</p>'
        ]
    slip = repaired_slip(run.canaries)
    if slip:
        step, row = slip
        parts.append(
            f'<div class="slip" data-step="{step}"><h4>A repaired slip, step {step}: a right answer whose thinking '
            f"holds a self-correction phrase (marked)</h4>{_completion_html(row)}</div>"
        )
    else:
        parts.append('<p class="muted">No repaired slip yet: no right answer\'s thinking holds a self-correction.</p>')
    badges = {
        "think": f"aha: think usage passes {100 * THINK_AHA_SHARE:g} %",
        "takeoff": "aha: self-correction takes off",
        "repaired_slip": "aha: first repaired slip",
    }
    for step, rows in run.canaries.items():
        marked = "".join(f'<span class="badge">{badges[key]}</span>' for key in badges if aha[key] == step)
        numbers = []
        for key, label in CANARY_FACTS:
            if step in run.series.get(key, {}):
                count = run.counts.get(key, {}).get(step)
                among = f" (of {count} thinking)" if count is not None else ""
                numbers.append(f"{label} {value_text(key, run.series[key][step])}{among}")
        ordered = sorted(rows, key=lambda row: row["canary"] not in tags)  # the picked canaries first, stable
        shown_rows = "".join(_completion_html(row, tags.get(row["canary"], "")) for row in ordered[:samples])
        parts.append(
            f'<section class="canary" id="run{index}-step-{step}" data-run="{index}" data-step="{step}">'
            f"<h4>Step {step} {marked}</h4>"
            f'<p class="muted">{len(rows)} canary completions · {_esc(" · ".join(numbers))}</p>{shown_rows}</section>'
        )
    return "".join(parts)


def markdown_table_html(text: str) -> str:
    """A markdown document of pipe tables and plain lines (what `reson compare` writes) as escaped HTML."""
    out, table = [], []

    def flush():
        if not table:
            return
        rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table]
        rows = [r for r in rows if not all(set(c) <= set(":- ") and c for c in r)]  # drop the |---| line
        table.clear()
        if not rows:
            return
        head, body = rows[0], rows[1:]
        out.append(
            '<table class="numbers compare"><thead><tr>'
            + "".join(f"<th>{_inline_markdown(c)}</th>" for c in head)
            + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{_inline_markdown(c)}</td>" for c in r) + "</tr>" for r in body)
            + "</tbody></table>"
        )

    for line in text.splitlines():
        if line.strip().startswith("|"):
            table.append(line)
            continue
        flush()
        line = line.strip()
        if line.startswith("#"):
            out.append(f"<h3>{_inline_markdown(line.lstrip('#').strip())}</h3>")
        elif line:
            out.append(f"<p>{_inline_markdown(line.removeprefix('- '))}</p>")
    flush()
    return "".join(out)


def compare_html(paths: list[str]) -> str:
    """The evaluation comparison: each markdown (or text) file as written by `reson compare`, or the table of
    `reson compare` built from evaluation folders."""
    files = [Path(p) for p in paths if Path(p).is_file()]
    folders = [Path(p) for p in paths if Path(p).is_dir()]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise ReportError(
            f"--compare: {', '.join(map(repr, missing))} not found: pass `reson compare` tables or eval folders."
        )
    parts = [markdown_table_html(path.read_text(encoding="utf-8", errors="replace")) for path in files]
    if folders:
        try:
            parts.append(markdown_table_html(compare(folders)))
        except CompareError as err:
            raise ReportError(f"--compare: {err}") from err
    return "".join(parts)


STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1280px;padding:1rem 2rem;color:#1d1d1f}
h1{margin-bottom:.2rem} .muted{color:#666} code{background:#f2f2f2;padding:0 .25em;border-radius:3px}
.swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;margin-right:.3em;vertical-align:middle}
.aha{display:flex;gap:1rem;flex-wrap:wrap;margin:.5rem 0 1rem}
.aha div{border:1px solid #ddd;border-radius:8px;padding:.6rem 1rem}
.aha b{font-size:1.4rem;display:block}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:1rem}
.plots figure.wide{grid-column:1/-1}
.plots figure{margin:0;border:1px solid #eee;border-radius:6px;padding:.4rem} .plots img{width:100%;height:auto}
.scroll{overflow-x:auto}
table.numbers{border-collapse:collapse;font-size:13px;margin:.5rem 0}
table.numbers th,table.numbers td{border:1px solid #ddd;padding:.2rem .5rem;text-align:right}
table.numbers th[scope=row],table.numbers thead th{text-align:left;background:#fafafa}
.canary{border-top:2px solid #eee;margin-top:1rem}
.badge{background:#fde68a;border-radius:999px;font-size:.8rem;padding:.1rem .6rem;margin-left:.5rem;
  vertical-align:middle}
.slip{border:2px solid #7c3aed;border-radius:8px;padding:.2rem .8rem;margin:.8rem 0}
.sample{border-left:5px solid #bbb;background:#fbfbfb;margin:.6rem 0;padding:.4rem .8rem}
.sample.right{border-color:#16a34a} .sample.wrong{border-color:#dc2626}
.sample.right .mark{color:#16a34a;font-weight:bold} .sample.wrong .mark{color:#dc2626;font-weight:bold}
.flag{color:#7c3aed;font-weight:bold} .pick{background:#e0e7ff;border-radius:4px;padding:0 .4em}
.question{font-style:italic;margin:.3rem 0} mark{background:#fde68a}
.label{font-size:.75rem;text-transform:uppercase;letter-spacing:.05em;color:#777;margin-top:.3rem}
pre{white-space:pre-wrap;word-break:break-word;margin:.1rem 0;padding:.4rem;border-radius:4px;
  max-height:18rem;overflow:auto}
pre.think{background:#eef2ff;color:#3730a3} pre.answer{background:#ecfdf5;color:#065f46} pre.prompt{background:#f4f4f4}
"""

# Records on each image whether it decoded (naturalWidth), so a headless browser's DOM dump can be checked.
IMAGE_CHECK = """
window.addEventListener("load", function () {
  var images = document.images, loaded = 0;
  for (var i = 0; i < images.length; i++) {
    images[i].setAttribute("data-natural-width", images[i].naturalWidth);
    if (images[i].naturalWidth > 0) loaded++;
  }
  document.body.setAttribute("data-images-loaded", loaded + "/" + images.length);
});
"""


def _run_facts(run: Run, index: int, aha: dict[str, int | None], overlay: bool) -> str:
    """A run's name, state and aha steps."""
    facts = [f"step {run.global_step}" + (f" of {run.max_steps}" if run.max_steps else "")]
    if run.max_steps:
        facts.append("finished" if run.global_step and run.global_step >= run.max_steps else "in progress")
    if run.state_file:
        facts.append(f"trainer state from <code>{_esc(run.state_file)}</code>")
    facts.append(f"{run.event_files} TensorBoard event file(s)")
    facts.append(f"{sum(map(len, run.canaries.values()))} canary completions at {len(run.canaries)} steps")
    if "train_runtime" in run.totals:
        facts.append(f"trained in {run.totals['train_runtime'] / 60:.1f} min")
    swatch = f'<span class="swatch" style="background:{colour(index)}"></span>' if overlay else ""

    def box(key: str, what: str) -> str:
        step = aha[key]
        shown_step = f'<a href="#run{index}-step-{step}">step {step}</a>' if step is not None else "not yet"
        return f'<div data-aha="{key}" data-step="{"" if step is None else step}"><b>{shown_step}</b>{what}</div>'

    boxes = [
        box("think", f"think usage passes {100 * THINK_AHA_SHARE:g} %"),
        box(
            "takeoff",
            f"self-correction takes off: ≥ {TAKEOFF_FACTOR:g}× its first rate among thinking completions, "
            f"≥ {100 * TAKEOFF_MIN:g} %",
        ),
        box("repaired_slip", "first repaired slip: a right answer self-corrects"),
    ]
    return (
        f'<div class="run" data-run="{index}"><h3>{swatch}{_esc(run.label)}</h3>'
        f'<p class="muted">{" · ".join(facts)}</p><div class="aha">{"".join(boxes)}</div></div>'
    )


def render_html(runs: Sequence[Run], plots: dict[str, tuple[Path, int]], compare: str = "", samples: int = 3) -> str:
    """The report page for `runs`, with the SVGs in `plots` (name -> (file, panels)) embedded as data URIs (sharp at
    any zoom, and lighter than the PNGs); a plot of several panels takes a whole row."""
    overlay = len(runs) > 1
    ahas = [aha_steps(run) for run in runs]
    title = "reson report: " + ", ".join(run.label for run in runs)
    figures = "".join(
        f'<figure id="plot-{_esc(name)}" class="{"wide" if panels > 1 else ""}"><img alt="{_esc(name)}" '
        f'src="data:image/svg+xml;base64,{base64.b64encode(path.read_bytes()).decode("ascii")}"></figure>'
        for name, (path, panels) in plots.items()
    )
    plotted = [key for plot in PLOTS for key in plot.keys] + ["reward_std"]
    body = [f"<h1>{_esc(title)}</h1>"]
    body += [_run_facts(run, i, aha, overlay) for i, (run, aha) in enumerate(zip(runs, ahas, strict=True))]
    body.append(f'<h2>Curves</h2><div class="plots">{figures or "<p>No metric logged yet.</p>"}</div>')
    if compare:
        body.append(f'<h2>Base against trained</h2><div id="compare">{compare}</div>')
    body.append(
        f'<h2>Numbers</h2><p class="muted">Shares in percent.</p><div class="scroll">{summary_table(runs)}</div>'
    )
    for i, run in enumerate(runs):
        body.append(
            f"<details><summary>Every logged step: {_esc(run.label)}</summary>"
            f'<div class="scroll">{steps_table(run, i, plotted)}</div></details>'
        )
    for i, (run, aha) in enumerate(zip(runs, ahas, strict=True)):
        if run.canaries:
            body.append(f"<h2>Canary completions: {_esc(run.label)}</h2>" + canary_html(run, i, aha, samples))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{STYLE}</style><script>{IMAGE_CHECK}</script></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def build_report(
    runs: str | Path | Sequence[str | Path],
    output_dir: str | Path | None = None,
    compare: Sequence[str] = (),
    samples: int = 3,
) -> Path:
    """Read the run folder(s) `runs`, write the plots (PNG and SVG) and report.html into `output_dir` (for one run,
    by default `RUN/report`), and return the page's path."""
    paths = [runs] if isinstance(runs, (str, Path)) else list(runs)
    compare_section = compare_html(list(compare)) if compare else ""
    loaded = [load_run(path, label) for path, label in zip(paths, run_labels(paths), strict=True)]
    if output_dir is None and len(loaded) > 1:
        raise ReportError(f"{len(loaded)} runs: pass --output_dir, the folder for their report.")
    out = Path(output_dir) if output_dir is not None else loaded[0].path / "report"
    if out.exists() and not out.is_dir():
        raise ReportError(f"--output_dir {out} is a file: give a folder (it is created if missing).")
    curves = [Curves(run.label, run.series, run.counts, markers(aha_steps(run)), run.reward_range) for run in loaded]
    plots = {}
    for plot in PLOTS:
        figure = draw(plot, curves)
        stem = out / plot.name
        if figure is None:
            for stale in (stem.with_suffix(".png"), stem.with_suffix(".svg")):  # from an earlier report
                stale.unlink(missing_ok=True)
            continue
        _png, svg = save(figure, stem)
        plots[plot.name] = (svg, len(figure.axes))
    page = out / REPORT_FILE
    page.write_text(render_html(loaded, plots, compare_section, samples), encoding="utf-8")
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="reson report",
        description="Plots and a self-contained HTML page of GRPO runs' curves and canary completions; several runs "
        "(seeds, recipes) are overlaid on the same plots.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "runs", nargs="+", metavar="RUN", help="the output_dir of a `reson train` run (finished or not)"
    )
    parser.add_argument(
        "--output_dir", help="folder for the plots and report.html (default: RUN/report; needed for several runs)"
    )
    parser.add_argument(
        "--compare",
        nargs="+",
        metavar="FILE_OR_EVAL_DIR",
        help="a markdown table from `reson compare`, or `reson eval` output folders to compare",
    )
    parser.add_argument(
        "--samples", type=int, default=3, help="canary completions shown per step, the picked canaries first"
    )
    args = parser.parse_args(argv)
    if args.samples < 0:
        parser.error(f"--samples must be 0 or more, got {args.samples}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        page = build_report(args.runs, args.output_dir, args.compare or (), args.samples)
    except ReportError as err:
        print(f"reson report: {err}", file=sys.stderr)
        return 2
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
