"""`reson report`: plots and a one-page HTML timeline of a GRPO run, to watch reasoning emerge.

    reson report outputs/miniature
    reson report outputs/qwen2.5-3b-gsm8k --compare outputs/compare.md --output reports/qwen3b

It reads only the run's output folder, so it works on a run still training and on a folder copied from
another machine:

- ``trainer_state.json``: the newest of ``OUTPUT_DIR/`` and its ``checkpoint-*/`` folders (by global step).
  Its log history holds what TRL's GRPOTrainer logs: ``reward``, ``reward_std``, ``rewards/<name>/mean``,
  ``completions/mean_length``, ``completions/clipped_ratio``, ``grad_norm``, ``loss``, ``emergence/*``, ...
- TensorBoard events under ``OUTPUT_DIR`` (tags ``train/<metric>``), for the metrics and the steps the trainer
  state lacks: a run in progress has logged there since its last checkpoint.
- ``emergence.jsonl``: the canary completions, one JSON line each, with the step they were sampled at.

It writes ``OUTPUT_DIR/report/`` (or ``--output``): one PNG per plot and ``report.html``, a single
self-contained page (the plots embedded as data URIs) with the plots, a table of the numbers, the detected
aha steps and, for each canary step, a few completions with the thinking and the answer shown apart, right
and wrong marked. Model output is untrusted: the page escapes all of it.

The aha steps: the first canary step where more than half the canary completions have a closed, non-empty
think block, and the first canary step where a correct answer's thinking holds a self-correction
(`reson.core.metrics.has_self_correction`). Oat-Zero's caution applies: a reflection keyword alone proves little,
so the page counts self-correction among correct answers and shows the completions to read.
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
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from reson.tools.plots import PLOTS, Marker, Series, draw

logger = logging.getLogger(__name__)

EMERGENCE_FILE = "emergence.jsonl"
STATE_FILE = "trainer_state.json"
# Once-per-run numbers TRL logs at the end of training (not per step): shown as run facts.
TOTAL_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos")
NOT_METRICS = ("step", "epoch", *TOTAL_KEYS)
THINK_AHA_SHARE = 0.5  # think usage must pass this share of the canary completions
RECORD_KEYS = ("think_used", "think_tokens", "self_correction", "accuracy", "format")
# reson.core.metrics.summarize keys plotted per canary step, as emergence/<key>
CANARY_KEYS = (
    "think_usage_pct",
    "avg_think_tokens",
    "self_correction_rate",
    "self_correction_rate_correct",
    "canary_accuracy",
)


class ReportError(ValueError):
    """The run folder or a comparison input cannot be reported on; the message says what to change."""


@dataclass
class Run:
    """Everything the report shows, read from one output folder."""

    path: Path
    series: dict[str, Series] = field(default_factory=dict)  # metric key -> {step: value}
    state_file: str | None = None  # the trainer_state.json used, relative to the run folder
    global_step: int | None = None
    max_steps: int | None = None
    totals: dict[str, float] = field(default_factory=dict)
    event_files: int = 0
    canaries: dict[int, list[dict]] = field(default_factory=dict)  # step -> emergence.jsonl rows


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
    for path in [run_dir / STATE_FILE, *run_dir.glob(f"checkpoint-*/{STATE_FILE}")]:
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


def read_emergence(run_dir: Path) -> dict[int, list[dict]]:
    """The canary completions of emergence.jsonl, grouped by step (a half-written last line is skipped)."""
    path = run_dir / EMERGENCE_FILE
    if not path.is_file():
        return {}
    canaries: dict[int, list[dict]] = {}
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number < len(lines):
                logger.warning("%s line %d is not JSON: skipped", path, number)
            continue
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            logger.warning("%s line %d has no integer 'step': skipped", path, number)
            continue
        canaries.setdefault(row["step"], []).append(row)
    return dict(sorted(canaries.items()))


def canary_record(row: dict) -> dict:
    """The emergence row with `reson.core.metrics.completion_record`'s keys (think_used, think_tokens,
    self_correction, accuracy, format), derived from its completion where the row does not carry them."""
    if all(key in row for key in RECORD_KEYS):
        return row
    from reson.core.metrics import completion_record

    graded = SimpleNamespace(accuracy=row.get("accuracy"), format=row.get("format", 0.0))
    record = completion_record(
        str(row.get("completion", "")), str(row.get("prompt", "")), graded, row.get("think_tokens")
    )
    return {**record, **row}


def canary_series(canaries: dict[int, list[dict]]) -> dict[str, Series]:
    """The emergence metrics per canary step from emergence.jsonl, through `reson.core.metrics.summarize` (the
    definition training and evaluation use), for steps the logs lack."""
    from reson.core.metrics import summarize

    series: dict[str, Series] = {}
    for step, rows in canaries.items():
        summary = summarize([canary_record(row) for row in rows])
        summary["canary_accuracy"] = summary["accuracy"]
        for key in CANARY_KEYS:
            series.setdefault(f"emergence/{key}", {})[step] = float(summary[key])
    return series


def merge(primary: dict[str, Series], secondary: dict[str, Series]) -> dict[str, Series]:
    """Series of both; where both hold a key at a step, `primary` wins."""
    merged = {key: dict(values) for key, values in secondary.items()}
    for key, values in primary.items():
        merged.setdefault(key, {}).update(values)
    return {key: dict(sorted(values.items())) for key, values in sorted(merged.items())}


def load_run(run_dir: str | Path) -> Run:
    """Read a run's output folder. Raises ReportError when the folder is missing or holds no logs."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ReportError(f"run folder {str(run_dir)!r} does not exist: pass the output_dir of a `reson train` run.")
    run = Run(path=path)
    found = find_trainer_state(path)
    state_series: dict[str, Series] = {}
    if found:
        state_path, state = found
        run.state_file = state_path.relative_to(path).as_posix()
        run.global_step, run.max_steps = state.get("global_step"), state.get("max_steps")
        state_series, run.totals = series_from_log_history(state.get("log_history") or [])
    tb_series, run.event_files = read_tensorboard(path)
    run.canaries = read_emergence(path)
    run.series = merge(merge(state_series, tb_series), canary_series(run.canaries))
    if not run.series and not run.canaries:
        raise ReportError(
            f"run folder {str(run_dir)!r} holds no training logs (no {STATE_FILE}, no TensorBoard events, no "
            f"{EMERGENCE_FILE}): pass the output_dir of a `reson train` run that has logged at least one step."
        )
    if run.series:  # TensorBoard runs ahead of the last checkpoint while training
        logged = max(max(values) for values in run.series.values() if values)
        run.global_step = max(run.global_step or 0, logged)
    return run


# ---------------------------------------------------------------------------------------------------------------------
# Aha steps
# ---------------------------------------------------------------------------------------------------------------------


def aha_steps(run: Run) -> dict[str, int | None]:
    """`think`: the first canary step where more than half the canary completions think (a closed, non-empty
    think block); `self_correction`: the first canary step with a correct answer whose thinking self-corrects.
    From emergence.jsonl when present, else from the logged emergence metrics."""
    think = correction = None
    if run.canaries:
        for step, rows in run.canaries.items():
            records = [canary_record(row) for row in rows]
            if think is None and sum(bool(r["think_used"]) for r in records) > THINK_AHA_SHARE * len(records):
                think = step
            if correction is None and any(r["self_correction"] and r.get("accuracy") == 1.0 for r in records):
                correction = step
    else:
        usage = run.series.get("emergence/think_usage_pct", {})
        think = next((step for step, pct in usage.items() if pct > 100 * THINK_AHA_SHARE), None)
        rate = run.series.get("emergence/self_correction_rate_correct", {})
        correction = next((step for step, value in rate.items() if value > 0), None)
    return {"think": think, "self_correction": correction}


# ---------------------------------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------------------------------


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _inline_markdown(text: str) -> str:
    """Escaped text with markdown's **bold** and `code` spans rendered (the only markup `reson compare` uses)."""
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", _esc(text))
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.4g}"


def _cell(value: float | None) -> str:
    if value is None:
        return "<td></td>"
    return f'<td data-value="{value!r}">{_fmt(value)}</td>'


def summary_table(series: dict[str, Series]) -> str:
    """First, last, min and max of every logged metric."""
    rows = []
    for key, values in series.items():
        if not values:
            continue
        steps = list(values)
        cells = [values[steps[0]], values[steps[-1]], min(values.values()), max(values.values())]
        rows.append(
            f'<tr data-key="{_esc(key)}"><th scope="row">{_esc(key)}</th><td>{len(values)}</td>'
            f"<td>{steps[0]}</td>{_cell(cells[0])}<td>{steps[-1]}</td>{''.join(_cell(v) for v in cells[1:])}</tr>"
        )
    head = "<tr><th>metric</th><th>points</th><th>first step</th><th>first</th><th>last step</th>"
    head += "<th>last</th><th>min</th><th>max</th></tr>"
    return f'<table class="numbers" id="summary"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def steps_table(series: dict[str, Series], keys: list[str]) -> str:
    """The plotted metrics at every logged step."""
    keys = [key for key in keys if series.get(key)]
    steps = sorted({step for key in keys for step in series[key]})
    head = "<tr><th>step</th>" + "".join(f'<th data-key="{_esc(k)}">{_esc(k)}</th>' for k in keys) + "</tr>"
    body = "".join(
        f'<tr data-step="{step}"><th scope="row">{step}</th>'
        + "".join(_cell(series[k].get(step)) for k in keys)
        + "</tr>"
        for step in steps
    )
    return f'<table class="numbers" id="steps"><thead>{head}</thead><tbody>{body}</tbody></table>'


def _completion_html(row: dict) -> str:
    from reson.core.parsing import extract_answer, split_completion

    record = canary_record(row)
    completion, prompt = str(row.get("completion", "")), str(row.get("prompt", ""))
    parsed = split_completion(completion, prompt)
    accuracy = record.get("accuracy")
    verdict, mark = {1.0: ("right", "✓ right"), 0.0: ("wrong", "✗ wrong")}.get(accuracy, ("ungraded", "? ungraded"))
    extracted = row.get("extracted", extract_answer(parsed.answer))
    gold = row.get("answer", row.get("gold"))
    facts = [f'<span class="mark">{mark}</span>']
    if gold is not None:
        facts.append(f"gold <code>{_esc(gold)}</code>")
    facts.append(f"extracted <code>{_esc(extracted) if extracted is not None else '—'}</code>")
    if record.get("think_used"):
        facts.append(f"{record.get('think_tokens', 0)} think tokens")
    if record.get("self_correction"):
        facts.append('<span class="flag">self-correction</span>')
    question = row.get("question")
    parts = [f'<div class="sample {verdict}"><div class="facts">{" · ".join(facts)}</div>']
    if question:
        parts.append(f'<div class="question">{_esc(question)}</div>')
    elif prompt:
        parts.append(f'<details><summary>prompt</summary><pre class="prompt">{_esc(prompt)}</pre></details>')
    if parsed.think is not None:
        state = "" if parsed.closed else " (never closed)"
        parts.append(f'<div class="label">thinking{state}</div><pre class="think">{_esc(parsed.think)}</pre>')
    parts.append(f'<div class="label">answer</div><pre class="answer">{_esc(parsed.answer)}</pre></div>')
    return "".join(parts)


CANARY_FACTS = {
    "emergence/think_usage_pct": "think usage {}%",
    "emergence/canary_accuracy": "accuracy {}",
    "emergence/avg_think_tokens": "{} tokens per think block",
    "emergence/self_correction_rate": "self-correction rate {}",
}


def canary_html(run: Run, aha: dict[str, int | None], samples: int) -> str:
    """For each canary step, its summary numbers and the first `samples` canary completions (the same prompts
    at every step, so one question can be followed through training)."""
    sections = []
    for step, rows in run.canaries.items():
        badges = []
        if step == aha["think"]:
            badges.append('<span class="badge">aha: think usage passes 50%</span>')
        if step == aha["self_correction"]:
            badges.append('<span class="badge">aha: first self-correction in a correct answer</span>')
        numbers = [
            template.format(_fmt(run.series[key][step]))
            for key, template in CANARY_FACTS.items()
            if step in run.series.get(key, {})
        ]
        shown = "".join(_completion_html(row) for row in rows[:samples])
        sections.append(
            f'<section class="canary" id="step-{step}" data-step="{step}"><h3>Step {step} {"".join(badges)}</h3>'
            f'<p class="muted">{len(rows)} canary completions · {_esc(" · ".join(numbers))}</p>{shown}</section>'
        )
    return "".join(sections)


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
        from reson.evaluation.compare import CompareError, compare

        try:
            parts.append(markdown_table_html(compare(folders)))
        except CompareError as err:
            raise ReportError(f"--compare: {err}") from err
    return "".join(parts)


STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1280px;padding:1rem 2rem;color:#1d1d1f}
h1{margin-bottom:.2rem} .muted{color:#666} code{background:#f2f2f2;padding:0 .25em;border-radius:3px}
.aha{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.aha div{border:1px solid #ddd;border-radius:8px;padding:.6rem 1rem}
.aha b{font-size:1.4rem;display:block}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:1rem}
.plots figure.wide{grid-column:1/-1}
.plots figure{margin:0;border:1px solid #eee;border-radius:6px;padding:.4rem} .plots img{width:100%;height:auto}
table.numbers{border-collapse:collapse;font-size:13px;margin:.5rem 0}
table.numbers th,table.numbers td{border:1px solid #ddd;padding:.2rem .5rem;text-align:right}
table.numbers th[scope=row],table.numbers thead th{text-align:left;background:#fafafa}
.canary{border-top:2px solid #eee;margin-top:1rem}
.badge{background:#fde68a;border-radius:999px;font-size:.8rem;padding:.1rem .6rem;margin-left:.5rem;
  vertical-align:middle}
.sample{border-left:5px solid #bbb;background:#fbfbfb;margin:.6rem 0;padding:.4rem .8rem}
.sample.right{border-color:#16a34a} .sample.wrong{border-color:#dc2626}
.sample.right .mark{color:#16a34a;font-weight:bold} .sample.wrong .mark{color:#dc2626;font-weight:bold}
.flag{color:#7c3aed;font-weight:bold} .question{font-style:italic;margin:.3rem 0}
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


def render_html(
    run: Run, plots: dict[str, Path], compare: str = "", samples: int = 3, wide: frozenset[str] = frozenset()
) -> str:
    """The report page for `run`, with the PNGs in `plots` (name -> file) embedded as data URIs; the plots named
    in `wide` (several panels side by side) take a whole row."""
    aha = aha_steps(run)
    title = f"reson report: {run.path.resolve().name}"
    status = "finished" if run.max_steps and run.global_step and run.global_step >= run.max_steps else "in progress"
    facts = [f"step {run.global_step}" + (f" of {run.max_steps}" if run.max_steps else "")]
    if run.max_steps:
        facts.append(status)
    if run.state_file:
        facts.append(f"trainer state from <code>{_esc(run.state_file)}</code>")
    facts.append(f"{run.event_files} TensorBoard event file(s)")
    facts.append(f"{sum(map(len, run.canaries.values()))} canary completions at {len(run.canaries)} steps")
    if "train_runtime" in run.totals:
        facts.append(f"trained in {run.totals['train_runtime'] / 60:.1f} min")

    def aha_box(key: str, what: str) -> str:
        step = aha[key]
        shown = f'<a href="#step-{step}">step {step}</a>' if step is not None else "not yet"
        anchor = f'id="aha-{key.replace("_", "-")}" data-step="{"" if step is None else step}"'
        return f"<div {anchor}><b>{shown}</b>{what}</div>"

    figures = "".join(
        f'<figure id="plot-{_esc(name)}" class="{"wide" if name in wide else ""}"><img alt="{_esc(name)}" '
        f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode("ascii")}"></figure>'
        for name, path in plots.items()
    )
    plotted = [key for plot in PLOTS for key in plot.keys] + ["reward_std"]
    body = [
        f'<h1>{_esc(title)}</h1><p class="muted">{" · ".join(facts)}</p>',
        '<div class="aha">',
        aha_box("think", "first canary step where more than half the completions think"),
        aha_box("self_correction", "first canary step where a correct answer self-corrects"),
        "</div>",
        f'<h2>Curves</h2><div class="plots">{figures or "<p>No metric logged yet.</p>"}</div>',
    ]
    if compare:
        body.append(f'<h2>Base against trained</h2><div id="compare">{compare}</div>')
    body.append("<h2>Numbers</h2>" + summary_table(run.series))
    body.append(f"<details><summary>Every logged step</summary>{steps_table(run.series, plotted)}</details>")
    if run.canaries:
        body.append("<h2>Canary completions</h2>" + canary_html(run, aha, samples))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{STYLE}</style><script>{IMAGE_CHECK}</script></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def build_report(
    run_dir: str | Path, output: str | Path | None = None, compare: list[str] = (), samples: int = 3
) -> Path:
    """Read the run in `run_dir`, write its plots and report.html into `output` (default `run_dir/report`), and
    return the HTML file's path."""
    compare_section = compare_html(list(compare)) if compare else ""
    run = load_run(run_dir)
    out = Path(output) if output is not None else run.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    aha = aha_steps(run)
    markers = [Marker(aha["think"], "aha: think > 50%")] if aha["think"] is not None else []
    if aha["self_correction"] is not None:
        markers.append(Marker(aha["self_correction"], "aha: self-correction", color="tab:purple"))
    plots, wide = {}, set()
    for plot in PLOTS:
        path = out / f"{plot.name}.png"
        panels = draw(plot, run.series, path, markers)
        if panels:
            plots[plot.name] = path
            if panels > 1:
                wide.add(plot.name)
        elif path.exists():
            path.unlink()  # a stale plot from an earlier report
    page = out / "report.html"
    page.write_text(render_html(run, plots, compare_section, samples, frozenset(wide)), encoding="utf-8")
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="reson report",
        description="Plots and a self-contained HTML page of a GRPO run's curves and canary completions.",
    )
    parser.add_argument("output_dir", help="the output_dir of a `reson train` run (finished or in progress)")
    parser.add_argument(
        "--compare",
        nargs="+",
        default=[],
        metavar="FILE_OR_EVAL_DIR",
        help="a markdown table from `reson compare`, or `reson eval` output folders to compare",
    )
    parser.add_argument("--output", help="folder for the plots and report.html (default: OUTPUT_DIR/report)")
    parser.add_argument("--samples", type=int, default=3, help="canary completions shown per step (default: 3)")
    args = parser.parse_args(argv)
    if args.samples < 0:
        parser.error(f"--samples must be 0 or more, got {args.samples}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        page = build_report(args.output_dir, args.output, args.compare, args.samples)
    except ReportError as err:
        print(f"reson report: {err}", file=sys.stderr)
        return 2
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
