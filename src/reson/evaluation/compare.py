"""`reson compare`: the "Baseline vs After GRPO" table from two or more `reson eval` output folders.

    reson compare runs/eval/base runs/eval/grpo                                   # prints the markdown table
    reson compare runs/eval/base runs/eval/grpo --labels "Qwen2.5-3B" "+ GRPO" --output_file runs/eval/compare.md

Rows are the metrics of each dataset (accuracy, pass@k and maj@k when sampled, format compliance, think usage,
think length, self-correction, truncation, completion length, then MATH's accuracy per level and subject);
columns are the runs, plus the change from the first to the second when there are two. Rates are shown in
percent and their change in points. Runs evaluated under different settings (template, problems, decoding)
are compared anyway, with a note saying what differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from reson.core import folders, metrics
from reson.core.help import HelpFormatter

ROWS = tuple(metrics.LABELS)  # the metrics of a dataset, in table order (pass@k and maj@k follow accuracy)
SETTINGS_COMPARED = ("template", "split", "num_problems", "seed", "backend", "generation")


class CompareError(ValueError):
    pass


def load_results(run_dir: str | Path) -> dict:
    path = Path(run_dir) / folders.RESULTS_FILE
    if not path.is_file():
        raise CompareError(
            f"{run_dir}: no {folders.RESULTS_FILE}; run `reson eval --output_dir {run_dir}` first (an interrupted "
            "eval finishes when run again)."
        )
    return json.loads(path.read_text())


def _metric_keys(runs: list[dict], dataset: str) -> list[str]:
    present = {k for run in runs for k in run["datasets"].get(dataset, {}).get("metrics", {})}
    sampled = sorted(
        (k for k in present if k.startswith(("pass@", "maj@"))),
        key=lambda k: (k.split("@")[0] != "pass", int(k.split("@")[1])),
    )
    ordered = ["accuracy", *sampled, *(k for k in ROWS if k != "accuracy")]
    return [k for k in ordered if k in present]


def compare_table(runs: list[dict], labels: list[str], title: str | None = None) -> str:
    """A markdown table of every dataset's metrics, one column per run (and a change column for two runs)."""
    if len(runs) != len(labels):
        raise CompareError(f"{len(labels)} labels for {len(runs)} runs: give one label per run.")
    two = len(runs) == 2
    title = title or (" vs ".join(labels))
    header = ["Dataset", "Metric", *labels] + (["Δ"] if two else [])
    lines = [f"## {title}", "", "| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    datasets = list(dict.fromkeys(ds for run in runs for ds in run["datasets"]))
    for dataset in datasets:
        found = [run["datasets"].get(dataset, {}).get("metrics", {}) for run in runs]
        rows = [(key, metrics.label(key), [m.get(key) for m in found]) for key in _metric_keys(runs, dataset)]
        for field, name in (("by_level", "level"), ("by_subject", "subject")):
            keys = sorted({k for run in runs for k in run["datasets"].get(dataset, {}).get(field, {})})
            for key in keys:
                values = [run["datasets"].get(dataset, {}).get(field, {}).get(key, {}).get("accuracy") for run in runs]
                rows.append(("accuracy", f"accuracy, {name} {key} (%)", values))
        for key, row_label, values in rows:
            cells = [dataset, row_label, *(metrics.cell(key, v) for v in values)]
            if two:
                cells.append(metrics.change(key, values[0], values[1]))
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for label, run in zip(labels, runs, strict=True):
        gen = run.get("generation", {})
        decoding = "greedy" if not gen.get("temperature") else f"T={gen.get('temperature')}, top_p={gen.get('top_p')}"
        lines.append(
            f"- **{label}**: `{run.get('model')}`, template `{run.get('template')}`, {decoding}, "
            f"{gen.get('num_generations', 1)} per problem, up to {gen.get('max_completion_length')} tokens"
        )
    notes = _differences(runs, labels)
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def _differences(runs: list[dict], labels: list[str]) -> list[str]:
    """Notes on settings that differ between the runs, so a table never hides an unfair comparison."""
    notes = []
    for key in SETTINGS_COMPARED:
        values = [run.get(key) if key != "generation" else _decoding(run) for run in runs]
        if any(v != values[0] for v in values[1:]):
            shown = ", ".join(f"{label}: {value}" for label, value in zip(labels, values, strict=True))
            notes.append(f"Note: the runs differ in {key} ({shown}).")
    datasets = set.intersection(*(set(run["datasets"]) for run in runs))
    for dataset in sorted(datasets):
        ids = [run["datasets"][dataset].get("ids") for run in runs]
        if any(i != ids[0] for i in ids[1:]):
            notes.append(f"Note: {dataset} was evaluated on different problems in different runs.")
    return notes


def _decoding(run: dict) -> dict:
    gen = run.get("generation", {})
    return {k: gen.get(k) for k in ("temperature", "top_p", "num_generations", "max_completion_length")}


def compare(
    run_dirs: list[str | Path], output: str | Path | None = None, labels: list[str] | None = None, overwrite=True
) -> str:
    """The comparison table of the `reson eval` folders `run_dirs`; also written to `output` when given (refused when
    the file exists, unless `overwrite`)."""
    if not run_dirs:
        raise CompareError("give at least one `reson eval` output folder.")
    runs = [load_results(d) for d in run_dirs]
    title = None
    if labels is None:
        if len(runs) == 2:
            labels, title = ["Baseline", "After GRPO"], "Baseline vs After GRPO"
        else:
            labels = [Path(d).name or str(d) for d in run_dirs]
    table = compare_table(runs, labels, title=title)
    if output is not None:
        folders.check_output_file(output, "--output_file", overwrite)
        folders.write_text(output, table)
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reson compare",
        description='Compare `reson eval` runs: the "Baseline vs After GRPO" table in markdown.',
        formatter_class=HelpFormatter,
    )
    parser.add_argument("runs", nargs="+", help="`reson eval` output folders (each with a results.json)")
    parser.add_argument(
        "--labels", nargs="+", default=None, help="column names (default for two: Baseline, After GRPO)"
    )
    parser.add_argument("--output_file", default=None, help="also write the table to this markdown file")
    parser.add_argument("--overwrite", action="store_true", help="replace --output_file if it exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        folders.check_output_file(args.output_file, "--output_file", args.overwrite)
        table = compare(args.runs, output=args.output_file, labels=args.labels, overwrite=args.overwrite)
    except (CompareError, folders.FolderError) as err:
        print(f"reson compare: {err}", file=sys.stderr)
        return 2
    print(table, end="")
    if args.output_file:
        print(f"\nwritten to {args.output_file}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
