"""The report's page: one self-contained HTML file (plots embedded as SVG data URIs), the numbers in tables, the
aha steps and, per run, the canary timeline. Model output is untrusted: the page escapes all of it."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path

from reson.core.metrics import self_correction_phrases
from reson.core.parsing import extract_answer, split_completion
from reson.evaluation.compare import CompareError, compare
from reson.tools.report.analysis import (
    TAKEOFF_FACTOR,
    TAKEOFF_MIN,
    THINK_AHA_SHARE,
    _verdict,
    aha_steps,
    pick_canaries,
    repaired_slip,
)
from reson.tools.report.plots import PLOTS, colour, is_percent, shown
from reson.tools.report.runs import ReportError, Run


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
    ("emergence/rejection_rate_among_thinking", "rejecting a candidate among thinking"),  # Countdown runs
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
