"""`reson report`: plots and a one-page HTML timeline of one or more GRPO runs, to watch reasoning emerge.

    reson report outputs/miniature
    reson report outputs/qwen2.5-3b-gsm8k --compare outputs/compare.md --output_dir reports/qwen3b
    reson report runs/grpo-seed1 runs/grpo-seed2 --output_dir reports/seeds

It writes ``RUN/report/`` (or ``--output_dir``, which a report of several runs needs): each plot as a 2x-resolution PNG
and an SVG, and ``report.html``, a single self-contained page with the plots, a table of the numbers, the aha steps
and, per run, the canary timeline: the completions of the canaries that show the change, with the thinking and the
answer shown apart, right and wrong marked. Several runs (seeds, recipes) are overlaid on the same plots, one colour
per run, the legends naming each run folder; the table has a group of columns per run. Shares (accuracy, rates,
clipped ratio) are in percent everywhere: plots, table and text.

The parts, one concern each:

- `runs`: reading a run's output folder (trainer state, TensorBoard events, emergence.jsonl), finished or not;
- `analysis`: the aha steps and the canaries the timeline follows;
- `plots`: the curves, drawn with matplotlib;
- `page`: the HTML page; model output is untrusted, and the page escapes all of it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from reson.core import folders
from reson.core.help import HelpFormatter
from reson.tools.report.analysis import aha_steps, markers
from reson.tools.report.page import compare_html, render_html
from reson.tools.report.plots import PLOTS, Curves, draw, save
from reson.tools.report.runs import ReportError, load_run, run_labels

REPORT_FILE = "report.html"


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
    folders.write_text(page, render_html(loaded, plots, compare_section, samples))
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
    except Exception as err:  # a full disk: every file written whole or left as it was
        reason = folders.disk_full_error(err)
        if reason is None:
            raise
        where = args.output_dir or Path(args.runs[0]) / "report"
        print(
            f"reson report: {folders.disk_full(where, reason)}; the earlier report's files are left as they were.",
            file=sys.stderr,
        )
        return 1
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
