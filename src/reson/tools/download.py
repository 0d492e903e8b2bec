"""`reson data`: download the datasets into a folder that `--data_dir` and `RESON_DATA_DIR` read, for machines
without the hub (HPC compute nodes, air-gapped boxes): run it where the hub is reachable, then copy the folder over.

    reson data --output_dir data                                   # every dataset
    reson data --output_dir data --datasets gsm8k math500          # some
    reson eval --model_name_or_path M --datasets gsm8k --data_dir data --output_dir runs/eval    # later, offline
    RESON_DATA_DIR=data reson train --config grpo_qwen2.5_3b_h100

Each dataset comes from its hub repo (`reson.core.data.HUB_DATASETS`) through `datasets.load_dataset`, the path
`load_problems` takes for a hub name, and each split is written, as the hub's records, to its place in the layout of
`../shared/data` (`reson.core.data.LOCAL_FILES`). So loading a name from the folder gives the rows that loading it
from the hub gives. Any name in both tables is a dataset here: adding one there adds it to this command.

Nothing is downloaded before the input is checked (dataset names, the output folder, files already there, which
`--overwrite` replaces). Each file is written beside its final name and renamed into place, so an interrupted run
never leaves half a file where a good one was. `--hub_mirror DIR` reads each repo from DIR/<owner>/<name> instead of
the hub: a local copy of the hub repos (`git clone https://huggingface.co/datasets/openai/gsm8k DIR/openai/gsm8k`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reson.core.data import HUB_DATASETS, LOCAL_FILES, hub_records, load_problems
from reson.core.help import HelpFormatter
from reson.core.jsonl import write_jsonl

DATASETS = tuple(name for name in HUB_DATASETS if name in LOCAL_FILES)


class InputError(ValueError):
    """Bad input, found before anything is downloaded; the message says what to change."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reson data",
        description="Download datasets from the hub into a folder for --data_dir / RESON_DATA_DIR (offline machines).",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--output_dir", type=Path, required=True, metavar="DIR", help="the folder to write, laid out like shared/data"
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=list(DATASETS),
        metavar="NAME",
        help=f"any of {', '.join(DATASETS)} (default: all of them)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace files of these datasets already there")
    parser.add_argument(
        "--hub_mirror", type=Path, metavar="DIR", help="read each hub repo from DIR/<owner>/<name>, not the hub"
    )
    return parser


def targets(names: list[str], output_dir: Path, overwrite: bool) -> list[tuple[str, str, Path]]:
    """(name, split, file) for every split of the named datasets; raises InputError on bad input."""
    unknown = [name for name in names if name not in DATASETS]
    if unknown:
        raise InputError(f"unknown dataset {unknown[0]!r}: choose from {', '.join(DATASETS)}.")
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"--output_dir {output_dir} is a file: give a folder.")
    files = [
        (name, split, output_dir / relative)
        for name in dict.fromkeys(names)
        for split, relative in LOCAL_FILES[name].items()
    ]
    present = [str(path) for _, _, path in files if path.exists()]
    if present and not overwrite:
        raise InputError(f"{present[0]} exists: pass --overwrite to replace it, or choose another --output_dir.")
    return files


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    # Check the input, before any download
    try:
        files = targets(args.datasets, args.output_dir, args.overwrite)
        if args.hub_mirror is not None and not args.hub_mirror.is_dir():
            raise InputError(f"--hub_mirror {args.hub_mirror}: no such folder.")
    except InputError as e:
        print(f"reson data: {e}", file=sys.stderr)
        return 2

    # Download and write, one split at a time
    for name, split, path in files:
        repo, config, hub_splits = HUB_DATASETS[name]
        source = str(args.hub_mirror / repo) if args.hub_mirror is not None else repo
        try:
            records = hub_records(name, split, source)
        except (ImportError, ValueError) as e:
            cause = (str(e.__cause__ or e).strip().splitlines() or [type(e.__cause__ or e).__name__])[0]
            print(
                f"reson data: could not load {name} ({source}, split {hub_splits[split]!r}): {cause}", file=sys.stderr
            )
            return 1
        write_jsonl(path, records)
        try:  # read back as training and evaluation will
            problems = load_problems(name, split, data_dir=str(args.output_dir))
        except ValueError as e:
            print(f"reson data: wrote {path}, but it does not load as problems: {e}", file=sys.stderr)
            return 1
        print(f"{name} {split}: {len(records):,} rows ({len(problems):,} problems) -> {path}")

    # Say how to use it
    print(f"use it with --data_dir {args.output_dir} or RESON_DATA_DIR={args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
