"""How often the accuracy reward agrees with outside ground truth, next to plain math-verify and TRL's reward.

    python bench/bench_grading.py                      # every source, both halves
    python bench/bench_grading.py --split heldout      # only the half the grader was not tuned on
    python bench/bench_grading.py --show 20            # also print reson's disagreements, 20 per source
    python bench/bench_grading.py --data_dir DIR       # the full datasets from DIR (default: ../shared/data)

Ground truth nobody on the project wrote (tests/data/grading, see its PROVENANCE.md):

- unit-test cases of Math-Verify, the MATH repository, lighteval, NeMo-Skills and TRL: (gold, prediction, verdict).
  Each prediction is wrapped as a completion, ``<think>.</think> <answer>PRED</answer>``; the verdict is the test's,
  or the hand verdict where the test's own expectation is disputed;
- published model completions on GSM8K, MATH, Minerva-math and OlympiadBench, labelled where the three graders
  disagreed by reading them (rows marked ambiguous are left out).

Each row is graded in the same run by reson (`reson.core.rewards.score`), plain math-verify (``verify(parse(gold),
parse(completion))`` in the main thread, its own timeouts) and TRL's `trl.rewards.accuracy_reward`. Per source it
prints n and, per grader, how many verdicts agree, the false positives (graded right, truly wrong) and the false
negatives.

Then three checks on the full datasets' reference solutions, as `reson.core.data` loads them from `--data_dir` (a
folder laid out like shared/data: `../shared/data` beside the clone, `RESON_DATA_DIR`, or what `reson data` writes;
the test suite carries only a subset, tests/data): how many rows each file yields against the counts of the
shared/data files (`FULL_SET_ROWS`: the loader leaves out the rows whose gold is ambiguous), every solution scores 1.0
against its own gold, and none scores 1.0 against another problem's gold (the negative control; pairs whose two golds
math-verify finds equal are left out).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GROUND_TRUTH = ROOT / "tests" / "data" / "grading"
DEFAULT_DATA_DIR = Path(os.environ.get("RESON_DATA_DIR") or ROOT.parent / "shared" / "data")
UNIT_TEST_FILES = (
    "math_verify_tests.jsonl",
    "math_repo_equivalence.jsonl",
    "lighteval_extractive_match_tests.jsonl",
    "nemo_skills_math_equal_tests.jsonl",
    "trl_rewards_tests.jsonl",
)
REFERENCE_SETS = (("gsm8k", "test"), ("gsm8k", "train"), ("math500", "test"), ("math", "test"), ("math", "train"))
# (rows in the file, rows it yields) for the files of shared/data (its PROVENANCE.md has their sha256)
FULL_SET_ROWS = {
    ("gsm8k", "test"): (1319, 1319),
    ("gsm8k", "train"): (7473, 7473),
    ("math500", "test"): (500, 500),
    ("math", "test"): (5000, 4992),  # less 8 solutions whose boxes disagree (ambiguous golds)
    ("math", "train"): (7500, 7487),  # less 11 ambiguous golds and 2 solutions that end in an empty \boxed{}
}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def half(source: str) -> str:
    """The unit tests' dev / heldout halves, by the same rule as model_outputs.jsonl's `split`."""
    return "dev" if int(hashlib.sha256(source.encode()).hexdigest(), 16) % 2 == 0 else "heldout"


def load_cases(split: str) -> dict[str, list[dict]]:
    """source name -> rows {completion, gold, truth}."""
    sources: dict[str, list[dict]] = {}
    for name in UNIT_TEST_FILES:
        rows = []
        for row in read_jsonl(GROUND_TRUTH / name):
            source = f"{row['source']}#{row.get('line', '')}"
            if split != "all" and half(source) != split:
                continue
            truth = row.get("human_verdict", row["expected"])
            rows.append(
                {
                    "completion": f"<think>.</think> <answer>{row['pred']}</answer>",
                    "gold": row["gold"],
                    "truth": bool(truth),
                    "pred": row["pred"],
                }
            )
        sources[name.removesuffix(".jsonl")] = rows
    outputs = [r for r in read_jsonl(GROUND_TRUTH / "model_outputs.jsonl") if not r.get("ambiguous")]
    for row in outputs:
        if split != "all" and row["split"] != split:
            continue
        key = f"outputs/{row['dataset']}"
        sources.setdefault(key, []).append(
            {"completion": row["completion"], "gold": row["gold"], "truth": bool(row["label"]), "pred": None}
        )
    return sources


# ---------------------------------------------------------------------------------------------------------------------
# The three graders


def grade_reson(rows: list[dict], timeout: float) -> list[tuple[bool | None, str | None]]:
    from reson.core.rewards import score

    scores = score([r["completion"] for r in rows], [r["gold"] for r in rows], timeout=timeout)
    return [(None if s.accuracy is None else s.accuracy == 1.0, s.extracted) for s in scores]


def _as_math(gold: str) -> str:
    return gold if "$" in gold or "\\boxed" in gold or "\\(" in gold else f"${gold}$"


def grade_math_verify(rows: list[dict]) -> list[bool | None]:
    from math_verify import parse, verify

    out = []
    for row in rows:
        try:
            gold = parse(_as_math(row["gold"]))
            out.append(bool(verify(gold, parse(row["completion"]))) if gold else None)
        except Exception:  # a timeout or a parser error is a wrong answer
            out.append(False)
    return out


def grade_trl(rows: list[dict]) -> list[bool | None]:
    from trl.rewards import accuracy_reward

    out = []
    for row in rows:
        try:
            reward = accuracy_reward([[{"role": "assistant", "content": row["completion"]}]], [row["gold"]])[0]
        except Exception:
            reward = 0.0
        out.append(None if reward is None else reward == 1.0)
    return out


def tally(truths: list[bool], verdicts: list[bool | None]) -> dict:
    counts = Counter()
    for truth, verdict in zip(truths, verdicts, strict=True):
        if verdict is None:
            counts["skipped"] += 1
        elif verdict == truth:
            counts["agree"] += 1
        else:
            counts["false positive" if verdict else "false negative"] += 1
    return counts


# ---------------------------------------------------------------------------------------------------------------------
# Reference solutions


def reference_checks(timeout: float, data_dir: Path) -> list[dict]:
    """Per reference set: rows read and yielded, own gold (must all be 1.0) and the negative control (must all be
    0.0)."""
    from math_verify import parse, verify

    from reson.core.data import LOCAL_FILES, load_problems
    from reson.core.rewards import score

    results = []
    for name, split in REFERENCE_SETS:
        lines = len(read_jsonl(data_dir / LOCAL_FILES[name][split]))
        rows = load_problems(name, split, str(data_dir))
        solutions = [r["solution"] for r in rows]
        golds = [r["answer"] for r in rows]
        own = score(solutions, golds, timeout=timeout)
        misses = [rows[i]["id"] for i, s in enumerate(own) if s.accuracy != 1.0]
        others = golds[1:] + golds[:1]  # each solution against the next problem's gold
        pairs = [i for i in range(len(rows)) if golds[i] != others[i]]
        equal = set()
        for i in pairs:  # two golds that are the same answer written differently are not a negative pair
            try:
                if verify(parse(_as_math(golds[i])), parse(_as_math(others[i]))):
                    equal.add(i)
            except Exception:
                pass
        pairs = [i for i in pairs if i not in equal]
        crossed = score([solutions[i] for i in pairs], [others[i] for i in pairs], timeout=timeout)
        false_positives = [
            (rows[i]["id"], golds[i], others[i]) for i, s in zip(pairs, crossed, strict=True) if s.accuracy == 1.0
        ]
        results.append(
            {
                "set": f"{name}/{split}",
                "rows": (lines, len(rows)),
                "expected_rows": FULL_SET_ROWS[(name, split)],
                "own_misses": misses,
                "negative_pairs": len(pairs),
                "false_positives": false_positives,
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("dev", "heldout", "all"), default="all", help="which half of the rows")
    parser.add_argument("--show", type=int, default=0, help="print up to N of reson's disagreements per source")
    parser.add_argument("--no_references", action="store_true", help="skip the reference-solution checks")
    parser.add_argument("--timeout", type=float, default=None, help="reson's limit per answer (default: its own)")
    parser.add_argument(
        "--data_dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="the full datasets, laid out like shared/data (default: RESON_DATA_DIR, else ../shared/data)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    from reson.core import rewards

    timeout = args.timeout or rewards.DEFAULT_TIMEOUT
    started = time.perf_counter()

    print("| source | n | reson agree | FP | FN | math-verify agree | FP | FN | TRL agree | FP | FN |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    totals = {"unit tests": Counter(), "model outputs": Counter()}
    shown = []
    for name, rows in load_cases(args.split).items():
        if not rows:
            continue
        truths = [r["truth"] for r in rows]
        reson_results = grade_reson(rows, timeout)
        graders = {
            "reson": [v for v, _ in reson_results],
            "math-verify": grade_math_verify(rows),
            "trl": grade_trl(rows),
        }
        cells = [name, str(len(rows))]
        group = totals["model outputs" if name.startswith("outputs/") else "unit tests"]
        group["n"] += len(rows)
        for grader, verdicts in graders.items():
            counts = tally(truths, verdicts)
            group[f"{grader} agree"] += counts["agree"]
            agree = 100 * counts["agree"] / len(rows)
            cells += [
                f"{counts['agree']} ({agree:.1f}%)",
                str(counts["false positive"]),
                str(counts["false negative"]),
            ]
        print("| " + " | ".join(cells) + " |", flush=True)
        wrong = [(r, v, e) for r, (v, e) in zip(rows, reson_results, strict=True) if v != r["truth"]]
        shown += [(name, *w) for w in wrong[: args.show]]
    for group, counts in totals.items():
        if counts["n"]:
            parts = [f"{g} {100 * counts[f'{g} agree'] / counts['n']:.1f}%" for g in ("reson", "math-verify", "trl")]
            print(f"{group}: n={counts['n']}, agreement " + ", ".join(parts))
    for name, row, verdict, extracted in shown:
        what = "FP" if verdict else "FN" if verdict is not None else "skipped"
        tail = row["completion"][-160:].replace("\n", " ")
        print(f"  {what} {name}: gold {row['gold']!r} extracted {extracted!r} | ...{tail}")

    if not args.no_references:
        print(f"\nreference solutions (as reson.core.data loads them from {args.data_dir}):")
        for result in reference_checks(timeout, args.data_dir):
            (lines, loaded), expected = result["rows"], result["expected_rows"]
            unexpected = "" if (lines, loaded) == expected else f" (shared/data: {expected[1]} of {expected[0]})"
            print(
                f"  {result['set']}: {loaded} of {lines} rows{unexpected}, "
                f"{len(result['own_misses'])} not 1.0 against their own gold"
                f"{' ' + str(result['own_misses'][:5]) if result['own_misses'] else ''}; negative control: "
                f"{len(result['false_positives'])} of {result['negative_pairs']} scored 1.0 against another gold"
                f"{' ' + str(result['false_positives'][:5]) if result['false_positives'] else ''}",
                flush=True,
            )
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
