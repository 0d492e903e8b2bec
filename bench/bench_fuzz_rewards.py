"""Fuzz the rewards with hostile completions, from every kind of caller, on a busy CPU.

    python bench/bench_fuzz_rewards.py [--completions 2500] [--timeout 2.0] [--data_dir ../shared/data]

Completions are drawn (seeded) from pieces a model or an attacker could write: answers in every form the grader reads,
nested and unclosed braces and tags, towers of exponents and factorials, huge numbers, long runs of `\\boxed{`,
unicode look-alikes, control characters, Python that must never run (`__import__('os').system(...)`), and
chat-format messages whose text parts are numbers, None or nested lists; gold answers come from GSM8K and MATH-500.
Both rewards (`reson.core.rewards.Accuracy` and `Format`) score them in GRPO-sized batches of 12 from four callers:
the main thread, a worker thread, a spawned subprocess and a forked one, while two processes keep both cores busy.
Then each caller scores the hostile completions one call at a time, to time the worst single call (from the call to
its return, the wait for a worker included).

Prints, per caller: completions scored, exceptions, scores outside what each reward can give (accuracy 0, 1 or None;
format 0, 0.25, 0.5, 1), the worst single call against `--timeout`, verifier workers left after shutdown and memory
growth; and whether any Python payload ran (it would have created a file).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CANARY = Path("/tmp/reson-fuzz-executed")  # the payloads below create this file if anything ever runs them
PAYLOADS = [
    f"__import__('os').system('touch {CANARY}')",
    f"open('{CANARY}', 'w').write('x')",
    f"\\boxed{{__import__('pathlib').Path('{CANARY}').touch()}}",
    f"<answer>exec(\"open('{CANARY}','w')\")</answer>",
]
HOSTILE = [
    "\\boxed{9^9^9^9^9}",
    "\\boxed{2^{2^{2^{2^{2^{2}}}}}}",
    "\\boxed{99!!!}",
    "\\boxed{(10^{10^{10}})!}",
    "\\boxed{10^{10^{10}}}",
    "\\boxed{" + "(" * 1000 + "1" + ")" * 1000 + "}",
    "\\boxed{" * 60 + "a" * 400_000,
    "<answer>" + "{" * 5000 + "</answer>",
    "\\boxed{\\frac{" * 200 + "1" + "}" * 400,
    "<answer>" + "1+" * 20_000 + "1</answer>",
    "\\boxed{" + "x^" * 3000 + "2}",
    "<answer>\\sqrt{" * 500 + "2" + "}" * 500 + "</answer>",
    "9" * 100_000,
    "\\boxed{1e999999999}",
    "<answer>\\int_0^\\infty e^{-x^{9^{9^9}}} dx</answer>",
]
PIECES = [
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "\\boxed{",
    "}",
    "{",
    "$",
    "\\(",
    "\\)",
    "\\frac{1}{2}",
    "\\sqrt{2}",
    "x=",
    " = ",
    "wait, ",
    "The answer is ",
    "\u2212",
    "\uff11\uff12",
    "\u00bd",
    "\x00",
    "\x1b[31m",
    "\u202e",
    "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
    "\\left(",
    "\\right)",
    "^",
    "_",
    "!",
    "\\infty",
    "\\pi",
    "1,000",
    "3.14",
    "-7",
    "\n",
    "  ",
]


def golds(data_dir: Path) -> list[str]:
    """The gold answers training and evaluation use: GSM8K's and MATH-500's, 300 of each."""
    from reson.core.data import load_problems

    return [row["answer"] for name in ("gsm8k", "math500") for row in load_problems(name, "test", str(data_dir))[:300]]


def verifier_processes() -> list[int]:
    """Every live verifier worker on the machine (``python -m reson.core.verifier``)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"reson.core.verifier" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def completion(rng: random.Random, gold: str):
    """One fuzzed completion: text, or a chat message list, sometimes with non-string parts."""
    kind = rng.random()
    if kind < 0.02:
        return rng.choice(HOSTILE)
    if kind < 0.05:
        return rng.choice(PAYLOADS)
    text = "".join(rng.choice(PIECES + [gold, str(rng.randint(-(10**6), 10**6))]) for _ in range(rng.randint(0, 40)))
    if kind < 0.18:  # chat format, with parts that are not text
        part = rng.choice([text, 5, None, ["nested", 1], {"x": 1}, 3.5])
        return [{"role": "assistant", "content": [{"type": "text", "text": part}]}]
    if kind < 0.2:
        return rng.choice([None, 42, b"bytes", ["a", "b"]])
    return text


def fuzz(args, caller: str, queue) -> None:
    """Score the fuzzed completions in batches of 12, then each hostile one alone; report to `queue`."""
    from reson.core import verifier
    from reson.core.rewards import Accuracy, Format

    rng = random.Random(f"{args.seed}-{caller}")
    gold_answers = golds(args.data_dir)
    accuracy, format_reward = Accuracy(timeout=args.timeout), Format()
    exceptions, bad_scores, scored = 0, 0, 0
    rss_start = None
    for start in range(0, args.completions, 12):
        gold = rng.choice(gold_answers)
        batch = [completion(rng, gold) for _ in range(min(12, args.completions - start))]
        for reward, kwargs, valid in (
            (accuracy, {"answer": [gold] * len(batch)}, (0.0, 1.0, None)),
            (format_reward, {}, (0.0, 0.25, 0.5, 1.0)),
        ):
            try:
                scores = reward(batch, prompts=["Question: 1+1?"] * len(batch), **kwargs)
                bad_scores += sum(s not in valid for s in scores) + (len(scores) != len(batch))
            except Exception:
                exceptions += 1
        scored += len(batch)
        if rss_start is None and scored >= 1200:  # after the pool and caches have warmed up
            rss_start = _rss()
    worst = 0.0
    for hostile in HOSTILE + PAYLOADS:
        began = time.perf_counter()
        try:
            accuracy([hostile], answer=[rng.choice(gold_answers)])
        except Exception:
            exceptions += 1
        worst = max(worst, time.perf_counter() - began)
    growth = (_rss() - rss_start) / 2**20 if rss_start else float("nan")
    verifier.shutdown_pool()
    queue.put(
        {
            "caller": caller,
            "completions": scored,
            "exceptions": exceptions,
            "bad_scores": bad_scores,
            "worst_call_s": round(worst, 2),
            "rss_growth_mib": round(growth, 1),
        }
    )


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def burn(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--completions", type=int, default=2500, help="fuzzed completions per caller (4 callers)")
    parser.add_argument("--timeout", type=float, default=2.0, help="the accuracy reward's timeout, seconds")
    parser.add_argument("--data_dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--callers", nargs="+", default=["main", "thread", "spawn", "fork"])
    args = parser.parse_args()
    CANARY.unlink(missing_ok=True)

    stop = multiprocessing.get_context("spawn").Event()
    burners = [multiprocessing.get_context("spawn").Process(target=burn, args=(stop,)) for _ in range(2)]
    for process in burners:
        process.start()
    rows = []
    try:
        for caller in args.callers:
            began = time.perf_counter()
            if caller in ("main", "thread"):
                import queue as queues

                queue = queues.Queue()
                if caller == "main":
                    fuzz(args, caller, queue)
                else:
                    thread = threading.Thread(target=fuzz, args=(args, caller, queue))
                    thread.start()
                    thread.join()
            else:
                context = multiprocessing.get_context(caller)
                queue = context.Queue()
                process = context.Process(target=fuzz, args=(args, caller, queue), daemon=True)
                process.start()
                result = queue.get()
                process.join()
                queue.put(result)
            row = queue.get()
            time.sleep(1.0)  # a worker's parent-death signal takes a moment
            row["workers_left"] = len(verifier_processes())
            row["seconds"] = round(time.perf_counter() - began)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        stop.set()
        for process in burners:
            process.join()

    executed = CANARY.exists()
    print(f"\nTwo busy processes on {os.cpu_count()} cores; accuracy timeout {args.timeout} s.\n")
    print(
        "| caller | completions | exceptions | bad scores | worst single call (s) | workers left | RSS growth (MiB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['caller']} | {r['completions']} | {r['exceptions']} | {r['bad_scores']} | {r['worst_call_s']} | "
            f"{r['workers_left']} | {r['rss_growth_mib']} |"
        )
    print(f"\npayloads executed: {'YES' if executed else 'none'}")
    worst = max(r["worst_call_s"] for r in rows)
    ok = not executed and all(r["exceptions"] == 0 and r["bad_scores"] == 0 for r in rows)
    ok = ok and worst <= args.timeout + 1.0 and all(r["workers_left"] == 0 for r in rows)
    print(f"worst single call {worst} s against a bound of {args.timeout + 1.0} s: {'within' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
