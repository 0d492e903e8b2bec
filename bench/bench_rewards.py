"""Accuracy-reward throughput: reson's reward against TRL's built-in ``accuracy_reward`` on the same completions.

    python bench/bench_rewards.py [--batches 4] [--timeout 5.0] [--pathological 2] [--data_dir ../shared/data]

Builds realistic GRPO batches of 192 completions (16 prompts x 12 generations) from the shared data: GSM8K-like
completions (the reference reasoning inside ``<think>``, then a right or a perturbed final answer as ``<answer>``,
``\\boxed{}`` or a sentence) and MATH-like ones (a MATH-500 solution inside ``<think>``, then a boxed answer that is
the problem's own or another problem's), plus a few pathological answers per batch (``9^9^9^9^9``, 1,000 nested
parentheses, ``10^{10^{10}}``). Each batch is scored by reson's ``Accuracy`` (one call per batch, as GRPOTrainer
calls it) and by ``trl.rewards.accuracy_reward`` (one call per completion, to time each; TRL loops over completions
anyway). TRL runs in the main thread, where math-verify's ``signal.alarm`` timeouts (10 s parse, 5 s verify) stop
the pathological inputs; from any other thread it would run without a timeout.

Prints completions/s for each reward, their ratio, on the mixed batches and on the same batches without the
pathological completions, and the worst single call of each: reson's reward called on one pathological completion,
counted from the call to its return (the wait for a worker included). Before reson's timed passes, one untimed pass
over the ordinary completions warms math-verify in the verifier processes (its LaTeX parser, their cache of parsed
gold answers), so that neither timed pass pays that once-per-process cost alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import time
from pathlib import Path

PATHOLOGICAL = [
    "\\boxed{9^9^9^9^9}",
    "\\boxed{" + "(" * 1000 + "1" + ")" * 1000 + "}",
    "\\boxed{10^{10^{10}}}",
]


def build_batches(data_dir: Path, batches: int, pathological: int, seed: int = 0) -> list[list[dict]]:
    """Batches of rows {completion, answer (reson's gold), solution (TRL's gold), pathological}."""
    rng = random.Random(seed)
    gsm = [json.loads(line) for line in (data_dir / "gsm8k" / "test.jsonl").read_text().splitlines()]
    math = [json.loads(line) for line in (data_dir / "math" / "math500_test.jsonl").read_text().splitlines()]
    rng.shuffle(gsm)
    rng.shuffle(math)
    out, g, m = [], 0, 0
    for _ in range(batches):
        rows = []
        for prompt in range(16):
            if prompt % 8 < 5:  # GSM8K-like prompts (10 of 16)
                problem, g = gsm[g % len(gsm)], g + 1
                reasoning, gold = problem["answer"].rsplit("####", 1)
                reasoning, gold = re.sub(r"<<[^>]*>>", "", reasoning).strip(), gold.strip().replace(",", "")
                for _ in range(12):
                    answer = gold if rng.random() < 0.5 else str(int(float(gold)) + rng.choice([-2, -1, 1, 10]))
                    final = rng.choice(
                        [f"<answer>{answer}</answer>", f"\\boxed{{{answer}}}", f"The answer is {answer}."]
                    )
                    rows.append(_row(f"<think>{reasoning}</think> {final}", gold, gold))
            else:  # MATH-like prompts
                problem, m = math[m % len(math)], m + 1
                gold = problem["answer"]
                for _ in range(12):
                    answer = gold if rng.random() < 0.5 else rng.choice(math)["answer"]
                    completion = f"<think>{problem['solution']}</think> The final answer is $\\boxed{{{answer}}}$."
                    rows.append(_row(completion, gold, f"${gold}$"))
        for k, index in enumerate(rng.sample(range(len(rows)), pathological)):
            bad = PATHOLOGICAL[(len(out) * pathological + k) % len(PATHOLOGICAL)]
            rows[index] = dict(rows[index], completion=f"<think>Let me think.</think> {bad}", pathological=True)
        out.append(rows)
    return out


def _row(completion: str, answer: str, solution: str) -> dict:
    return {"completion": completion, "answer": answer, "solution": solution, "pathological": False}


def run_reson(batches: list[list[dict]], timeout: float) -> dict:
    from reson.core import rewards, verifier

    rewards.clear_caches()
    start = time.monotonic()
    verifier.warm_up()
    startup = time.monotonic() - start
    reward = rewards.Accuracy(timeout=timeout)
    clean = [[r for r in rows if not r["pathological"]] for rows in batches]
    for rows in clean:  # warm math-verify in the workers, untimed (module docstring)
        reward([r["completion"] for r in rows], answer=[r["answer"] for r in rows])
    rewards.clear_caches()
    seconds, worst_call, scores = 0.0, 0.0, []
    for rows in batches:
        start = time.monotonic()
        scores += reward([r["completion"] for r in rows], answer=[r["answer"] for r in rows])
        seconds += time.monotonic() - start
    pool = verifier.get_pool()
    # the worst single call: each pathological answer scored alone, right after the one before (its worker restarts)
    for bad in PATHOLOGICAL:
        rewards.clear_caches()
        start = time.monotonic()
        reward([f"<think>x</think> {bad}"], answer=["7"])
        worst_call = max(worst_call, time.monotonic() - start)
    rewards.clear_caches()
    tasks_before = pool.tasks
    clean_seconds = 0.0
    for rows in clean:
        start = time.monotonic()
        reward([r["completion"] for r in rows], answer=[r["answer"] for r in rows])
        clean_seconds += time.monotonic() - start
    result = {
        "seconds": seconds,
        "clean_seconds": clean_seconds,
        "startup": startup,
        "worst": worst_call,
        "timeouts": pool.timeouts,
        "scores": scores,
        "workers": pool.size,
        "clean_verified": pool.tasks - tasks_before,
    }
    verifier.shutdown_pool()
    return result


def run_trl(batches: list[list[dict]]) -> dict:
    from trl.rewards import accuracy_reward

    times, scores = [], []
    for rows in batches:
        for row in rows:
            start = time.monotonic()
            [value] = accuracy_reward([[{"role": "assistant", "content": row["completion"]}]], [row["solution"]])
            times.append(time.monotonic() - start)
            scores.append(value)
    flags = [r["pathological"] for rows in batches for r in rows]
    return {
        "seconds": sum(times),
        "clean_seconds": sum(t for t, bad in zip(times, flags, strict=True) if not bad),
        "worst": max(times),
        "scores": scores,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=4, help="batches of 192 completions (default 4)")
    parser.add_argument("--pathological", type=int, default=2, help="pathological completions per batch (default 2)")
    parser.add_argument("--timeout", type=float, default=None, help="reson's limit per answer (default: its own)")
    default_data = Path(__file__).resolve().parents[2] / "shared" / "data"
    parser.add_argument("--data_dir", type=Path, default=Path(os.environ.get("RESON_DATA_DIR", default_data)))
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)

    batches = build_batches(args.data_dir, args.batches, args.pathological)
    n = sum(map(len, batches))
    clean_n = n - sum(r["pathological"] for rows in batches for r in rows)
    print(f"{n} completions in {len(batches)} batches of 192 ({clean_n} ordinary, {n - clean_n} pathological)")
    print(f"cores available: {len(os.sched_getaffinity(0))}")

    from reson.core.rewards import DEFAULT_TIMEOUT

    args.timeout = args.timeout or DEFAULT_TIMEOUT
    ours = run_reson(batches, args.timeout)
    print(
        f"reson accuracy : {n / ours['seconds']:8.1f} completions/s mixed, {clean_n / ours['clean_seconds']:8.1f} "
        f"without pathological; worst single call {ours['worst']:.2f} s (limit {args.timeout} s); "
        f"{ours['timeouts']} overruns; {ours['workers']} verifier processes, start-up {ours['startup']:.1f} s (once)"
    )
    print(f"                 {ours['clean_verified']} of the {clean_n} ordinary completions needed math-verify")
    trl = run_trl(batches)
    print(
        f"TRL accuracy   : {n / trl['seconds']:8.1f} completions/s mixed, {clean_n / trl['clean_seconds']:8.1f} "
        f"without pathological; worst completion {trl['worst']:.2f} s"
    )
    print(
        f"seconds        : reson {ours['seconds']:.2f} mixed, {ours['clean_seconds']:.2f} clean; "
        f"TRL {trl['seconds']:.2f} mixed, {trl['clean_seconds']:.2f} clean"
    )
    print(
        f"speed-up       : {trl['seconds'] / ours['seconds']:.1f}x mixed, "
        f"{trl['clean_seconds'] / ours['clean_seconds']:.1f}x without pathological"
    )
    mean = lambda xs: sum(x for x in xs if x is not None) / max(1, sum(x is not None for x in xs))  # noqa: E731
    print(f"mean reward    : reson {mean(ours['scores']):.3f}, TRL {mean(trl['scores']):.3f} (TRL reads no <answer>)")


if __name__ == "__main__":
    main()
