"""The verifier pool: a wall-clock bound on every call (from the main thread, another thread, a daemon process, right
after a kill), workers replaced and never orphaned, and a pool that cannot start scores 0.0 without raising."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import reson.core.rewards as rewards
from reson.core import verifier
from reson.core.rewards import Accuracy

LIMIT = 1.0  # per-answer limit used in the timing tests (seconds)
SLACK = 4.0  # noisy shared machines: generous, but far below what an unbounded power tower takes (minutes)


@pytest.fixture(scope="module", autouse=True)
def pool():
    """One warm verifier pool for the module; stopped afterwards so no process outlives the tests."""
    verifier.warm_up()
    yield verifier.get_pool()
    pids = [w.proc.pid for w in verifier.get_pool().workers]
    verifier.shutdown_pool()
    for pid in pids:
        assert not _alive(pid), f"verifier process {pid} survived shutdown"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def think(answer: str) -> str:
    return f"<think>Let me work it out.</think> {answer}"


def test_pool_spans_the_cores(monkeypatch):
    assert verifier.VerifierPool().size == max(2, min(len(os.sched_getaffinity(0)), 8))
    monkeypatch.setenv("RESON_VERIFY_WORKERS", "3")
    assert verifier.VerifierPool().size == 3  # nothing starts until the pool is used


PATHOLOGICAL = {
    "power tower": "\\boxed{9^9^9^9^9}",
    "1000 nested parentheses": "\\boxed{" + "(" * 1000 + "1" + ")" * 1000 + "}",
    "nested exponent": "\\boxed{10^{10^{10}}}",
}


def _batch(tag: str, bad: str | None) -> tuple[list[str], list[str]]:
    """192 completions (16 prompts x 12), MATH-style so each goes through math-verify; ``tag`` keeps caches cold."""
    completions, golds = [], []
    for p in range(16):
        gold = f"\\frac{{{p + 1}}}{{{tag}}}"
        for g in range(12):
            completions.append(think(f"\\boxed{{\\frac{{{p + 1 + g % 2}}}{{{tag}}}}}"))
            golds.append(gold)
    if bad is not None:
        completions[100] = think(bad)
    return completions, golds


def _timed(tag, bad, in_thread=False):
    completions, golds = _batch(tag, bad)
    reward = Accuracy(timeout=LIMIT)
    box = {}

    def run():
        start = time.monotonic()
        box["result"] = reward(completions, answer=golds)
        box["elapsed"] = time.monotonic() - start

    if in_thread:
        worker = threading.Thread(target=run)
        worker.start()
        worker.join(timeout=120)
        assert not worker.is_alive(), "scoring from a thread did not finish"
    else:
        run()
    expected = [1.0 if i % 2 == 0 else 0.0 for i in range(192)]
    if bad is not None:
        expected[100] = 0.0
    assert box["result"] == expected
    return box["elapsed"]


@pytest.mark.parametrize("in_thread", [False, True], ids=["main thread", "other thread"])
@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_completion_delays_a_batch_by_at_most_the_limit(name, in_thread):
    verifier.warm_up()
    tag = 1000 + 10 * list(PATHOLOGICAL).index(name) + in_thread
    baseline = _timed(tag, None, in_thread)
    with_bad = _timed(tag + 5000, PATHOLOGICAL[name], in_thread)
    assert with_bad <= baseline + LIMIT + SLACK, (name, baseline, with_bad)


def test_the_wait_for_a_replacement_worker_counts():
    """Right after an overrun killed the only worker, the next call still returns within its limit: waiting for the
    replacement is part of the bound (the answer it could not verify in time scores 0.0)."""
    pool = verifier.VerifierPool(workers=1)
    try:
        pool.start()
        assert pool.verify([("7", "10^{10^{10}}")], LIMIT) == [verifier.TIMED_OUT]
        start = time.monotonic()
        verdicts = pool.verify([("\\sqrt{2}/2", "\\frac{1}{\\sqrt{2}}")], LIMIT)
        assert time.monotonic() - start <= LIMIT + 0.5
        assert verdicts in ([True], [verifier.TIMED_OUT])  # verified, or not in time: never longer than the bound
    finally:
        pool.close()


def test_an_overrun_is_not_remembered():
    """A verdict lost to the clock (a loaded machine) is tried again by the next call; real verdicts are cached."""
    completion, gold = think("\\boxed{10^{10^{10}}}"), "7"
    rewards.clear_caches()
    assert Accuracy(timeout=LIMIT)([completion], answer=[gold]) == [0.0]
    assert not rewards._RESULT_CACHE
    assert Accuracy(timeout=LIMIT)([think("\\boxed{\\sqrt{4}}")], answer=["2"]) == [1.0]
    assert len(rewards._RESULT_CACHE) == 1


def _score_in_child(queue):
    """Runs in a daemon process, from a non-main thread: a pool must still start and bound the time."""
    os.environ["RESON_VERIFY_WORKERS"] = "2"  # the smallest pool: one worker serves while the other restarts
    out = {}

    def run():
        start = time.monotonic()
        out["result"] = Accuracy(timeout=LIMIT)(
            [think(PATHOLOGICAL["nested exponent"]), think("\\boxed{\\frac{1}{\\sqrt{2}}}")],
            answer=["7", "\\sqrt{2}/2"],
        )
        out["elapsed"] = time.monotonic() - start
        verifier.shutdown_pool()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    queue.put(out)


def test_bounded_from_a_daemon_worker_process():
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_score_in_child, args=(queue,), daemon=True)
    child.start()
    out = queue.get(timeout=120)
    child.join(timeout=30)
    assert out["result"] == [0.0, 1.0]
    startup = 30.0  # the child starts its own verifier processes first (about 2 s; generous on a loaded machine)
    assert out["elapsed"] <= startup + 2 * LIMIT + SLACK


def test_a_killed_worker_is_replaced(pool):
    before = pool.restarts
    assert Accuracy(timeout=LIMIT)([think(PATHOLOGICAL["nested exponent"])], answer=["9"]) == [0.0]
    assert pool.restarts >= before  # an overrun restarts its worker; a soft-deadline stop does not need to
    assert Accuracy(timeout=LIMIT)([think("\\boxed{\\sqrt{4}}")], answer=["2"]) == [1.0]  # the pool still works
    pool.start()  # the replacement is forked in the background: wait for it
    assert len(pool.workers) == pool.size and all(w.ready for w in pool.workers)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_a_caller_killed_while_scoring_from_a_thread():
    """A caller that scores from a short-lived thread and is then SIGKILLed leaves no verifier process behind."""
    script = textwrap.dedent(
        """
        import sys, threading, time
        from reson.core import verifier
        from reson.core.rewards import Accuracy

        def score():  # a thread that starts the pool, then a tower that keeps a worker busy for 30 s
            verifier.warm_up()
            print(" ".join(str(w.proc.pid) for w in verifier.get_pool().workers), flush=True)
            Accuracy(timeout=30.0)(["<think>a</think> \\\\boxed{9^9^9^9^9}"], answer=["7"])

        threading.Thread(target=score, daemon=True).start()
        time.sleep(120)
        """
    )
    caller = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(pid) for pid in caller.stdout.readline().split()]
        assert pids and all(_alive(pid) for pid in pids)
        time.sleep(1.0)  # the tower is being verified now
        os.kill(caller.pid, signal.SIGKILL)
        caller.wait(timeout=10)
        deadline = time.monotonic() + 3.0
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in pids if _alive(pid)], "a verifier process outlived its killed caller"
    finally:
        caller.kill()


@pytest.mark.parametrize("executable", ["/nonexistent/python", "/bin/false"], ids=["cannot spawn", "dies at start"])
def test_a_pool_that_cannot_start_scores_zero_without_raising(monkeypatch, executable):
    verifier.shutdown_pool()
    rewards.clear_caches()
    monkeypatch.setattr(sys, "executable", executable)
    try:
        start = time.monotonic()
        completions = [think("\\boxed{\\frac{1}{\\sqrt{2}}}"), think("<answer>18</answer>")]
        assert rewards.accuracy(completions, answer=["\\sqrt{2}/2", "18"]) == [0.0, 1.0]  # numbers need no pool
        assert time.monotonic() - start < 30
    finally:
        verifier.shutdown_pool()
        rewards.clear_caches()
