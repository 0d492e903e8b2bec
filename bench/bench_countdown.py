"""Countdown reward throughput: reson's ``Countdown`` against an eval-based reward like TinyZero's, same completions.

    python bench/bench_countdown.py [--batches 8] [--seed 0]

Builds GRPO-shaped batches of 192 completions (16 prompts x 12 generations) from generated test problems
(``reson.core.countdown.problems``), each a thinking trace (candidate expressions tried, checked and some rejected)
and then a final answer: right (the solution, as ``expr = target``, with ``×`` and ``÷``), wrong (an operator
changed, a number used twice or left out), in another form (an unclosed thinking, the answer only inside it, two
answer spans, an answer over several lines, a made-up next turn), and 4 hostile ones per batch (a power tower over
the problem's own numbers, 1,000 nested parentheses, a 5,000-digit literal, Python code).

THE COMPARISON BASELINE is written here, for this benchmark only: an eval-based reward that works as TinyZero's
``countdown.py`` does (and Mini-R1, nano-aha-moment and ms-swift after it): the text after the first "Assistant:" of
prompt + completion, its last line, the last ``<answer>`` span on it, the integers in it (``re.findall(r"\\d+")``)
against the numbers as a multiset, a character whitelist ``[\\d+\\-*/().\\s]``, then ``eval(expr, {"__builtins__":
None}, {})`` and ``abs(value - target) < 1e-5``; its 0.1 format credit is counted as 0 here. It is NOT run on the
power towers: eval would compute them for minutes in one C call that no timeout stops, so they are skipped for it
(its figures are over the other completions, and the output says how many were skipped).

reson is called once per batch, as GRPOTrainer calls a reward; the baseline once per completion (it takes one). Each
pass over the completions runs ``--passes`` times and the fastest counts, as timeit does: on a shared machine the
slower ones measure other work. The worst single call is the slowest completion, each called alone ``--passes``
times and taken at its fastest: the cost of that input, not a pause of the machine. Prints
completions/s (all that each runs on, and without the hostile ones), the worst single call, the search measures'
own speed, and the two rewards' mean reward by kind of completion.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import time

# ---------------------------------------------------------------------------------------------------------------------
# THE COMPARISON BASELINE (eval-based, as TinyZero's reward works; not reson's code)

_WHITELIST_RE = re.compile(r"^[\d+\-*/().\s]+$")


def baseline_reward(prompt: str, completion: str, nums: list[int], target: int) -> float:
    """1.0 or 0.0 the way an eval-based Countdown reward decides (module docstring). Never run on power towers."""
    text = prompt + completion
    if "Assistant:" not in text:
        return 0.0
    last_line = text.split("Assistant:", 1)[1].split("\n")[-1]
    spans = re.findall(r"<answer>(.*?)</answer>", last_line)
    if not spans:
        return 0.0
    expression = spans[-1].strip()
    try:
        if sorted(int(n) for n in re.findall(r"\d+", expression)) != sorted(nums):
            return 0.0
    except ValueError:  # an integer longer than Python reads from text
        return 0.0
    if not _WHITELIST_RE.match(expression):
        return 0.0
    try:
        value = eval(expression, {"__builtins__": None}, {})  # the baseline's way; reson never evaluates text
    except Exception:
        return 0.0
    return float(abs(value - target) < 1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# Completions

PROMPT = (
    "A conversation between User and Assistant. The assistant thinks in <think> </think> tags and answers in "
    "<answer> </answer> tags. User: Using the numbers {nums}, write an equation that equals {target}, with + - * / "
    "and each number once. Assistant: Let me solve this step by step.\n<think>"
)
BOMB = "tower"  # the kind of completion the baseline is not run on


def _perturbed(solution: str, rng: random.Random) -> str:
    """The solution with one operator changed: almost always a wrong value."""
    spots = [i for i, c in enumerate(solution) if c in "+-*/"]
    i = rng.choice(spots)
    return solution[:i] + rng.choice([c for c in "+-*/" if c != solution[i]]) + solution[i + 1 :]


def _thinking(row: dict, rng: random.Random) -> str:
    """A trace: a few wrong candidates computed and rejected, then the solution checked."""
    from reson.core.countdown import ExpressionError, evaluate

    lines = []
    for _ in range(rng.randint(1, 4)):
        candidate = _perturbed(row["solution"], rng)
        try:
            value = evaluate(candidate)
            shown = str(value.numerator) if value.denominator == 1 else f"{float(value):.2f}"
        except ExpressionError:
            shown = "undefined"
        lines.append(f"Let me try {candidate} = {shown}. That is not {row['target']}, so try another way.")
    lines.append(f"What about {row['solution']} = {row['target']}? Yes, that works.")
    return " " + " ".join(lines) + " "


def completions_for(row: dict, rng: random.Random) -> list[tuple[str, str]]:
    """12 (kind, completion) pairs for one problem, as a group of GRPO generations might look."""
    nums, target, solution = row["nums"], row["target"], row["solution"]
    think = _thinking(row, rng)
    doubled = f"{solution} + {nums[0]} - {nums[0]}"
    missing = solution.replace(str(nums[-1]), "", 1).strip(" +-*/") or str(nums[0])
    pairs = [
        ("right", f"{think}</think>\n<answer>{solution}</answer>"),
        ("right", f"{think}</think>\n<answer>{solution}</answer>"),
        ("right, = target", f"{think}</think>\n<answer>{solution} = {target}</answer>"),
        ("right, × ÷", f"{think}</think>\n<answer>{solution.replace('*', '×').replace('/', '÷')}</answer>"),
        ("right, several lines", f"{think}</think>\n<answer>\n{solution}\n</answer>\n"),
        ("right, made-up next turn", f"{think}</think>\n<answer>{solution}</answer>\nUser: thanks! Assistant: ok"),
        ("wrong value", f"{think}</think>\n<answer>{_perturbed(solution, rng)}</answer>"),
        ("wrong value", f"{think}</think>\n<answer>{_perturbed(solution, rng)}</answer>"),
        ("number used twice", f"{think}</think>\n<answer>{doubled}</answer>"),
        ("number left out", f"{think}</think>\n<answer>{missing}</answer>"),
        ("answer only in the thinking", f"{think}<answer>{solution}</answer></think>\nThe answer is {target}."),
        ("thinking never closed", f"{think} and so on"),
    ]
    return pairs


def hostile_for(row: dict, kind: int) -> tuple[str, str]:
    nums = row["nums"]
    answers = [
        (BOMB, "**".join(map(str, nums))),  # 44**19**35: every eval-based reward hangs on it
        ("nested parentheses", "(" * 1000 + row["solution"] + ")" * 1000),
        ("5,000-digit literal", "1" * 5000),
        ("Python code", "__import__('os').getpid()"),
    ]
    name, answer = answers[kind % len(answers)]
    return name, f" Let me think.</think>\n<answer>{answer}</answer>"


def build_batches(batches: int, seed: int) -> list[list[dict]]:
    """Batches of 192 rows {prompt, completion, nums, target, kind}: 16 problems x 12 completions, 4 hostile."""
    from reson.core.countdown import problems

    rng = random.Random(f"bench-countdown/{seed}")
    rows = problems("test", 16 * batches, seed=seed)
    out = []
    for b in range(batches):
        batch = []
        for row in rows[16 * b : 16 * (b + 1)]:
            prompt = PROMPT.format(nums=row["nums"], target=row["target"])
            for kind, completion in completions_for(row, rng):
                batch.append({"prompt": prompt, "completion": completion, **row, "kind": kind})
        for k, index in enumerate(rng.sample(range(len(batch)), 4)):
            kind, completion = hostile_for(batch[index], k)
            batch[index] = dict(batch[index], completion=completion, kind=kind)
        out.append(batch)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Timing


def _best_pass(passes: int, run) -> float:
    """The fastest of ``passes`` runs of ``run()``, in seconds (timeit's rule: the others measure the machine)."""
    best = float("inf")
    for _ in range(passes):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _worst_single_call(rows: list[dict], passes: int, call) -> tuple[float, str]:
    """The slowest completion, each timed alone ``passes`` times and taken at its fastest: its own cost, not a
    pause of the machine. Returns (seconds, its kind)."""
    worst, kind = 0.0, ""
    for row in rows:
        seconds = _best_pass(passes, lambda row=row: call(row))
        if seconds > worst:
            worst, kind = seconds, row["kind"]
    return worst, kind


def run_reson(batches: list[list[dict]], passes: int) -> dict:
    from reson.core.countdown import Countdown, search_measures

    reward = Countdown()
    columns = [{k: [r[k] for r in batch] for k in ("completion", "nums", "target", "prompt")} for batch in batches]
    clean = [
        {k: [v for v, r in zip(c[k], b, strict=True) if not _hostile(r)] for k in c}
        for c, b in zip(columns, batches, strict=True)
    ]

    def score(cols):
        return reward(cols["completion"], nums=cols["nums"], target=cols["target"], prompts=cols["prompt"])

    scores = [s for cols in columns for s in score(cols)]
    rows = [r for batch in batches for r in batch]
    worst, worst_kind = _worst_single_call(
        rows,
        passes,
        lambda r: reward([r["completion"]], nums=[r["nums"]], target=[r["target"]], prompts=[r["prompt"]]),
    )
    return {
        "scores": scores,
        "seconds": _best_pass(passes, lambda: [score(cols) for cols in columns]),
        "clean_seconds": _best_pass(passes, lambda: [score(cols) for cols in clean]),
        "worst": worst,
        "worst_kind": worst_kind,
        "search_seconds": _best_pass(
            passes, lambda: [search_measures(r["completion"], r["nums"], r["target"], r["prompt"]) for r in rows]
        ),
    }


def run_baseline(batches: list[list[dict]], passes: int) -> dict:
    rows = [r for batch in batches for r in batch]
    runs = [r for r in rows if r["kind"] != BOMB]  # the towers would hang it (module docstring)
    clean = [r for r in runs if not _hostile(r)]

    def score(row):
        return baseline_reward(row["prompt"], row["completion"], row["nums"], row["target"])

    worst, worst_kind = _worst_single_call(runs, passes, score)
    return {
        "scores": [None if r["kind"] == BOMB else score(r) for r in rows],
        "seconds": _best_pass(passes, lambda: [score(r) for r in runs]),
        "clean_seconds": _best_pass(passes, lambda: [score(r) for r in clean]),
        "worst": worst,
        "worst_kind": worst_kind,
        "count": len(runs),
    }


_HOSTILE_KINDS = {BOMB, "nested parentheses", "5,000-digit literal", "Python code"}


def _hostile(row: dict) -> bool:
    return row["kind"] in _HOSTILE_KINDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=8, help="batches of 192 completions (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="problems and completions (default 0)")
    parser.add_argument("--passes", type=int, default=5, help="timed passes; the fastest counts (default 5)")
    args = parser.parse_args()

    batches = build_batches(args.batches, args.seed)
    rows = [r for batch in batches for r in batch]
    n, hostile = len(rows), sum(map(_hostile, rows))
    bombs = sum(r["kind"] == BOMB for r in rows)
    print(f"{n} completions in {len(batches)} batches of 192 ({n - hostile} ordinary, {hostile} hostile)")
    print(f"cores available: {len(os.sched_getaffinity(0))}")
    ours = run_reson(batches, args.passes)
    base = run_baseline(batches, args.passes)
    clean_n = n - hostile
    print()
    print("| | reson `countdown` | eval-based baseline | reson / baseline |")
    print("|---|---|---|---|")
    print(
        f"| all it runs on | {n / ours['seconds']:,.0f} completions/s ({n}) | "
        f"{base['count'] / base['seconds']:,.0f} completions/s ({base['count']}: {bombs} towers skipped) | "
        f"{(n / ours['seconds']) / (base['count'] / base['seconds']):.1f}x |"
    )
    print(
        f"| without the hostile ({clean_n}) | {clean_n / ours['clean_seconds']:,.0f} completions/s | "
        f"{clean_n / base['clean_seconds']:,.0f} completions/s | "
        f"{(clean_n / ours['clean_seconds']) / (clean_n / base['clean_seconds']):.1f}x |"
    )
    print(
        f"| worst single call | {1000 * ours['worst']:.2f} ms ({ours['worst_kind']}) | "
        f"{1000 * base['worst']:.2f} ms ({base['worst_kind']}; towers skipped) | |"
    )
    print(f"\nsearch measures: {n / ours['search_seconds']:,.0f} completions/s (one call per completion)")
    print("\nmean reward by kind (the baseline's 0.1 format credit counted as 0):")
    print("| kind | n | reson | baseline |")
    print("|---|---:|---:|---:|")
    kinds = sorted({r["kind"] for r in rows}, key=lambda k: (k in _HOSTILE_KINDS, k))
    for kind in kinds:
        ours_k = [s for r, s in zip(rows, ours["scores"], strict=True) if r["kind"] == kind]
        base_k = [s for r, s in zip(rows, base["scores"], strict=True) if r["kind"] == kind and s is not None]
        base_cell = f"{sum(base_k) / len(base_k):.2f}" if base_k else "skipped"
        print(f"| {kind} | {len(ours_k)} | {sum(ours_k) / len(ours_k):.2f} | {base_cell} |")


if __name__ == "__main__":
    main()
