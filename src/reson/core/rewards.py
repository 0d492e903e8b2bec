r"""Rewards for GRPO: final-answer accuracy (math-verify, bounded time) and a graded think-format reward.

Both follow TRL's reward contract: ``reward(completions, answer, prompts=None, **kwargs) -> list[float | None]``.
Completions may be strings or message lists (``[{"role": "assistant", "content": ...}]``); dataset columns arrive as
keyword arguments (the gold answer is the ``answer`` column); the object's ``__name__`` is the metric key
(``rewards/accuracy/mean``). Rewards are small callable classes so they pickle, and are looked up by name in
``REWARDS``.

Bounded time, from anywhere. math-verify's own timeout is ``signal.alarm``: whole seconds, main thread only; off the
main thread some inputs (``9^9^9^9``) run for minutes. So the accuracy reward never runs math-verify in the calling
process. Plain numbers (most of GSM8K and all of the miniature) are compared exactly in the caller with no sympy at
all; everything else goes to a persistent pool of verifier processes (``python -c`` subprocesses: no fork of a
process that holds torch threads, no re-import of the caller's ``__main__``, and they work from daemon processes too)
that run math-verify with its timeout off. The caller enforces a wall-clock deadline per completion, kills a worker
that overruns, starts a replacement and scores that completion 0.0. Scoring therefore works the same from the main
thread, another thread or a worker process, and never raises into the trainer. The pool starts on first need (about
two seconds, once; ``warm_up()`` does it ahead of time) and shuts down at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reson.core.parsing import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
    Number,
    extract_answer,
    is_hedged,
    last_boxed,
    numbers_equal,
    parse_gsm8k_gold,
    parse_number,
    prompt_opens_think,
    split_completion,
)

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.0  # seconds per completion; ordinary answers verify in ~2 ms
MAX_ANSWER_CHARS = 1000  # longer final-answer spans score 0.0 without reaching sympy (MATH-500's longest gold: 53)
MAX_NESTING = 40  # deeper bracket nesting scores 0.0 without reaching sympy
_STARTUP_TIMEOUT = 60.0  # seconds a fresh verifier process may take to import math-verify


def completion_text(completion) -> str:
    """The text of a completion given as a string or as a message list (the last message's content)."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, Sequence) and completion:
        content = completion[-1].get("content", "") if isinstance(completion[-1], dict) else completion[-1]
        if isinstance(content, list):  # multimodal parts: [{"type": "text", "text": ...}]
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return content if isinstance(content, str) else str(content)
    return ""


# ---------------------------------------------------------------------------------------------------------------------
# Format


def format_score(completion: str, prompt: str = "") -> float:
    """Grade the ``<think>content</think>answer`` structure of one completion (see ``Format``)."""
    completion = completion or ""
    prefilled = prompt_opens_think(prompt)
    opens, closes = completion.count(THINK_OPEN), completion.count(THINK_CLOSE)
    if opens + closes == 0:
        return 0.0
    if opens > (0 if prefilled else 1) or closes != 1:
        return 0.25  # repeated blocks, tag spam, an unclosed block
    parsed = split_completion(completion, prompt)
    if not parsed.closed or not parsed.answer.strip():
        return 0.25  # no final answer after the block
    flaws = [
        not parsed.think.strip(),  # empty think block
        not prefilled and opens == 0,  # closing tag only, and the prompt did not open the block
        not prefilled and opens == 1 and completion.lstrip().find(THINK_OPEN) != 0,  # text before <think>
        not _answer_tags_ok(parsed.answer),
    ]
    return 0.5 if any(flaws) else 1.0


def _answer_tags_ok(answer: str) -> bool:
    opens, closes = answer.count(ANSWER_OPEN), answer.count(ANSWER_CLOSE)
    if opens == closes == 0:
        return True
    if opens != 1 or closes != 1:
        return False
    start, end = answer.find(ANSWER_OPEN) + len(ANSWER_OPEN), answer.find(ANSWER_CLOSE)
    return start <= end and bool(answer[start:end].strip())


class Format:
    """Graded reward for the ``<think>content</think>answer`` structure.

    The opening ``<think>`` may come from the prompt (a prompt ending with ``<think>``); it is then not expected in
    the completion. Grades, checked top to bottom:

    - **0.0**: no ``<think>`` or ``</think>`` tag in the completion at all.
    - **0.25**: tags, but no single closed block followed by an answer: more than one ``<think>`` or ``</think>``
      (repeated blocks, tag spam; with a prefilled prompt any ``<think>`` counts as a repeat), no ``</think>`` (the
      block never closes), or only whitespace after ``</think>``.
    - **0.5**: one closed block followed by a non-empty answer, with a flaw: the think block is empty (whitespace
      only), or the opening ``<think>`` is missing (a prompt that did not prefill it), or text comes before
      ``<think>``, or the answer uses ``<answer>`` tags other than as one ``<answer>non-empty</answer>`` pair.
    - **1.0**: exactly ``<think>`` (or the prefilled tag), non-empty thinking, one ``</think>``, then a non-empty
      answer; ``<answer>`` tags optional but, when present, exactly one pair with non-empty content.

    Accuracy is not looked at: a well-formed wrong answer earns 1.0 here and 0.0 from ``accuracy``.
    """

    def __init__(self):
        self.__name__ = "format"

    def __call__(self, completions, prompts=None, **kwargs) -> list[float]:
        prompts = prompts if prompts is not None else [""] * len(completions)
        pairs = zip(completions, prompts, strict=True)
        return [format_score(completion_text(c), completion_text(p)) for c, p in pairs]


# ---------------------------------------------------------------------------------------------------------------------
# Gold answers


@dataclass(frozen=True)
class Gold:
    """A gold answer, read once: ``text`` for math-verify (None when empty), ``number`` when it is a plain number."""

    text: str | None
    number: Number | None


_GOLD_CACHE: dict[str, Gold] = {}
_UNPARSEABLE_GOLDS: set[str] = set()  # gold texts math-verify could not parse
_WARNED = {"gold": False}


def prepare_gold(gold) -> Gold:
    r"""Read a gold answer once (cached by its text): a final answer (``"1,234"``, ``"\frac{1}{2}"``), a full GSM8K
    solution (the number after ``####``) or a full MATH solution (its last ``\boxed{}``)."""
    key = "" if gold is None else str(gold)
    cached = _GOLD_CACHE.get(key)
    if cached is not None:
        return cached
    text = key.strip()
    if "####" in text:
        text = parse_gsm8k_gold(text)
    elif "\\boxed" in text or "\\fbox" in text:
        text = (last_boxed(text) or "").strip()
    text = _strip_math_delimiters(text)
    result = Gold(text=text or None, number=parse_number(text))
    if len(_GOLD_CACHE) > 200_000:
        _GOLD_CACHE.clear()
    _GOLD_CACHE[key] = result
    return result


def _strip_math_delimiters(text: str) -> str:
    text = text.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(text) >= len(left) + len(right) and text.startswith(left) and text.endswith(right):
            return text[len(left) : len(text) - len(right)].strip()
    return text


def _squash(text: str) -> str:
    return "".join(text.split()).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")


def _nesting_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth = max(depth - 1, 0)
    return deepest


# ---------------------------------------------------------------------------------------------------------------------
# Scoring


@dataclass
class Score:
    """One completion's scores: ``accuracy`` (1.0, 0.0, or None when the gold answer cannot be parsed), ``format``
    (0.0/0.25/0.5/1.0) and ``extracted``, the final-answer span that was compared (None when none)."""

    accuracy: float | None
    format: float
    extracted: str | None


_VERIFY = object()  # marker: math-verify must decide
_LIST_COMMA_RE = re.compile(r",(?!\d{3}(?!\d))")  # a comma that is not a thousands separator


def _quick_accuracy(completion: str, prompt: str, gold: Gold) -> tuple[float | None | object, str | None]:
    """Decide accuracy without sympy where possible; returns (result or _VERIFY, extracted span)."""
    if gold.text is None:
        return None, None
    parsed = split_completion(completion, prompt)
    span = extract_answer(parsed.answer)
    if span is None:
        return 0.0, None
    span = _strip_math_delimiters(span)
    if not span or is_hedged(span, gold.text):
        return 0.0, span
    if gold.number is not None:
        pred = parse_number(span)
        if pred is not None:
            return float(numbers_equal(gold.number, pred)), span
        if "=" not in span and _LIST_COMMA_RE.search(span):
            return 0.0, span  # a tuple, list, set or interval never equals a single number
    if _squash(span) == _squash(gold.text):
        return 1.0, span  # the same text is the same answer
    if len(span) > MAX_ANSWER_CHARS or _nesting_depth(span) > MAX_NESTING:
        return 0.0, span
    if gold.text in _UNPARSEABLE_GOLDS:
        return None, span
    return _VERIFY, span


_RESULT_CACHE: dict[tuple[str, str], bool | None] = {}


def score_accuracy(
    completions: Sequence[str], golds: Sequence, prompts: Sequence[str] | None = None, timeout: float = DEFAULT_TIMEOUT
) -> tuple[list[float | None], list[str | None]]:
    """Accuracy of each completion against its gold answer, and the extracted answer spans. Never raises."""
    prompts = prompts if prompts is not None else [""] * len(completions)
    results: list[float | None] = [0.0] * len(completions)
    spans: list[str | None] = [None] * len(completions)
    todo: dict[tuple[str, str], list[int]] = {}
    for i, (completion, gold, prompt) in enumerate(zip(completions, golds, prompts, strict=True)):
        try:
            info = prepare_gold(gold)
            result, spans[i] = _quick_accuracy(completion or "", prompt or "", info)
        except Exception:  # a reward must never take the trainer down
            logger.exception("accuracy: scoring completion %d failed; scored 0.0", i)
            result = 0.0
        if result is _VERIFY:
            key = (info.text, spans[i])
            cached = _RESULT_CACHE.get(key, _VERIFY)  # .get: another thread may clear the cache meanwhile
            if cached is _VERIFY:
                todo.setdefault(key, []).append(i)
            else:
                results[i] = None if cached is None else float(cached)
        else:
            results[i] = result
            if result is None:
                _note_unparseable(gold)
    if todo:
        keys = list(todo)
        verdicts = get_pool().verify(keys, timeout)
        if len(_RESULT_CACHE) > 100_000:
            _RESULT_CACHE.clear()
        for key, verdict in zip(keys, verdicts, strict=True):
            _RESULT_CACHE[key] = verdict  # an overrun is cached as wrong too: a repeated tower costs the limit once
            if verdict is None:
                _UNPARSEABLE_GOLDS.add(key[0])
            for i in todo[key]:
                results[i] = None if verdict is None else float(verdict)
                if verdict is None:
                    _note_unparseable(golds[i])
    return results, spans


_UNPARSEABLE_COUNT = {"rows": 0}


def _note_unparseable(gold) -> None:
    _UNPARSEABLE_COUNT["rows"] += 1
    if not _WARNED["gold"]:
        _WARNED["gold"] = True
        logger.warning(
            "accuracy: gold answer %r cannot be parsed; such rows get reward None (skipped) and are counted in "
            "reson.core.rewards.unparseable_gold_count(). Check the dataset's answer column.",
            str(gold)[:200],
        )


def clear_caches() -> None:
    """Forget cached gold answers and verdicts (benchmarks and tests that need cold caches)."""
    _GOLD_CACHE.clear()
    _RESULT_CACHE.clear()
    _UNPARSEABLE_GOLDS.clear()


def unparseable_gold_count() -> int:
    """How many rows so far had a gold answer that could not be parsed (scored None)."""
    return _UNPARSEABLE_COUNT["rows"]


def score(
    completions: Sequence, golds: Sequence, prompts: Sequence | None = None, timeout: float = DEFAULT_TIMEOUT
) -> list[Score]:
    """Accuracy, format and the extracted answer of each completion: the one scoring used by ``reson score``,
    evaluation and the emergence metrics, so they all agree with the training rewards."""
    texts = [completion_text(c) for c in completions]
    prompt_texts = [completion_text(p) for p in prompts] if prompts is not None else [""] * len(texts)
    if len(golds) != len(texts) or len(prompt_texts) != len(texts):
        raise ValueError(
            f"score: got {len(texts)} completions, {len(golds)} gold answers and {len(prompt_texts)} prompts; "
            "pass one gold answer (and prompt) per completion"
        )
    accuracy, spans = score_accuracy(texts, golds, prompt_texts, timeout)
    return [
        Score(accuracy=a, format=format_score(t, p), extracted=s)
        for a, t, p, s in zip(accuracy, texts, prompt_texts, spans, strict=True)
    ]


class Accuracy:
    r"""1.0 when the final answer equals the gold answer (math-verify), else 0.0; None when the gold can't be parsed.

    The final answer is read only after the think block (``reson.core.parsing.split_completion``): the last
    ``<answer>...</answer>``, else the last ``\boxed{}``, else the last number. A right number mentioned only while
    thinking earns nothing, an unclosed think block earns nothing, and so does a hedged answer (``17 or 18``, a list
    of candidates for a single-number gold). Plain numbers are compared exactly (``0.5 = 1/2 = \frac{1}{2} = 0.50``,
    ``1,234 = $1234``); anything else goes to math-verify (``\sqrt{2}/2 = \frac{1}{\sqrt{2}}``) in the verifier pool
    with a wall-clock ``timeout`` in seconds per completion; an overrun scores 0.0.

    The gold answer comes from the ``answer`` column (or ``solution``, TRL's name). Missing both is a configuration
    error and raises ValueError; nothing about a completion ever raises.
    """

    uses_timeout = True

    def __init__(self, timeout: float = DEFAULT_TIMEOUT):
        if not timeout > 0:
            raise ValueError(f"accuracy: timeout must be a positive number of seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self.__name__ = "accuracy"

    def __call__(
        self,
        completions,
        answer=None,
        prompts=None,
        log_metric: Callable | None = None,
        log_extra: Callable | None = None,
        **kwargs,
    ):
        golds = answer if answer is not None else kwargs.get("solution")
        if golds is None:
            raise ValueError(
                "accuracy reward: the dataset has no 'answer' column (nor 'solution'); add the gold final answers "
                "as an 'answer' column (reson.core.data.load_problems does)"
            )
        texts = [completion_text(c) for c in completions]
        prompt_texts = [completion_text(p) for p in prompts] if prompts is not None else [""] * len(texts)
        before = get_pool().timeouts if _POOL is not None else 0
        results, spans = score_accuracy(texts, golds, prompt_texts, self.timeout)
        try:  # the trainer's hooks: overruns as a metric, the compared answers as a column of the completions table
            if log_metric is not None:
                log_metric("rewards/accuracy/timeouts", float((_POOL.timeouts if _POOL is not None else 0) - before))
            if log_extra is not None:
                log_extra("extracted_answer", ["" if s is None else s for s in spans])
        except Exception:
            logger.debug("accuracy: the trainer's logging hooks failed", exc_info=True)
        return results


REWARDS: dict[str, type] = {"accuracy": Accuracy, "format": Format}

accuracy = Accuracy()
format_reward = Format()


def get_reward(name: str, **options) -> Callable:
    """A reward by name (``REWARDS``), built with ``options``; ValueError listing the valid names otherwise."""
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; choose from: {', '.join(sorted(REWARDS))}")
    return REWARDS[name](**options)


def reward_funcs(names: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> list[Callable]:
    """The reward callables for ``names`` in order, ready for ``GRPOTrainer(reward_funcs=...)``."""
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in REWARDS]
    if unknown:
        raise ValueError(
            f"unknown reward(s) {', '.join(map(repr, unknown))}; choose from: {', '.join(sorted(REWARDS))}"
        )
    return [
        get_reward(n, timeout=timeout) if getattr(REWARDS[n], "uses_timeout", False) else get_reward(n) for n in names
    ]


# ---------------------------------------------------------------------------------------------------------------------
# The verifier pool


class _Worker:
    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.buffer = b""
        self.ready = False
        self.started = time.monotonic()
        self.task: int | None = None
        self.sent = 0.0
        self.deadline = 0.0


def _default_workers() -> int:
    env = os.environ.get("RESON_VERIFY_WORKERS")
    if env:
        return max(1, int(env))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


class VerifierPool:
    """Persistent math-verify processes with a per-task wall-clock deadline enforced by the caller.

    ``verify(pairs, timeout)`` returns, for each ``(gold, prediction)``, True/False, or None when the gold cannot be
    parsed. A task that overruns ``timeout`` is False; its worker is killed and replaced. Thread-safe (one batch at
    a time); usable from any thread and from daemon processes.
    """

    def __init__(self, workers: int | None = None):
        self.size = workers or _default_workers()
        self.workers: list[_Worker] = []
        self.timeouts = 0  # tasks that overran, since the pool started
        self.restarts = 0
        self.tasks = 0  # answers sent to math-verify, since the pool started
        self.max_task_seconds = 0.0  # slowest task from dispatch to verdict (or kill), since the pool started
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._failed_starts = 0
        self._broken = False

    # -- processes

    def _spawn(self) -> _Worker:
        src = str(Path(__file__).resolve().parents[2])
        code = f"import sys; sys.path.insert(0, {src!r}); from reson.core.rewards import _worker_main; _worker_main()"
        env = dict(
            os.environ, RESON_VERIFY_PDEATHSIG="1" if threading.current_thread() is threading.main_thread() else "0"
        )
        env.pop("PYTHONSTARTUP", None)
        proc = subprocess.Popen(
            [sys.executable, "-u", "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # a worker that cannot start says why on the trainer's stderr
            env=env,
            close_fds=True,
        )
        os.set_blocking(proc.stdout.fileno(), False)
        return _Worker(proc)

    @staticmethod
    def _kill(worker: _Worker) -> None:
        with contextlib.suppress(OSError):
            worker.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.proc.wait(timeout=5)
        for stream in (worker.proc.stdin, worker.proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()

    def _replace(self, worker: _Worker) -> None:
        self._kill(worker)
        self.workers.remove(worker)
        self.restarts += 1
        if not self._broken:
            self.workers.append(self._spawn())

    def start(self, wait: bool = True) -> None:
        """Start the worker processes (if not running) and, with ``wait``, block until they are ready."""
        with self._lock:
            try:
                while len(self.workers) < self.size and not self._broken:
                    self.workers.append(self._spawn())
                if wait:
                    self._run([], deque(), [], timeout=0.0, until_ready=True)
            except Exception:
                logger.exception("accuracy: verifier processes could not start; non-numeric answers will score 0.0")

    def close(self) -> None:
        """Stop every worker. Safe to call twice; does nothing in a forked child that inherited the pool."""
        if os.getpid() != self._pid:
            return
        with self._lock:
            for worker in self.workers:
                with contextlib.suppress(OSError):
                    worker.proc.stdin.close()
            for worker in self.workers:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.proc.wait(timeout=0.5)
                self._kill(worker)
            self.workers = []

    # -- the event loop

    def verify(self, pairs: Sequence[tuple[str, str]], timeout: float = DEFAULT_TIMEOUT) -> list[bool | None]:
        results: list[bool | None] = [False] * len(pairs)
        if not pairs:
            return results
        with self._lock:
            try:
                while len(self.workers) < self.size and not self._broken:
                    self.workers.append(self._spawn())
                self._run(pairs, deque(range(len(pairs))), results, timeout=timeout)
            except Exception:  # never raise into the trainer; unfinished tasks stay False
                logger.exception("accuracy: verifier pool failed; unfinished answers scored 0.0")
        return results

    def _run(self, pairs, pending: deque, results: list, timeout: float, until_ready: bool = False) -> None:
        selector = selectors.DefaultSelector()
        try:
            while True:
                now = time.monotonic()
                for worker in list(self.workers):
                    if worker.proc.poll() is not None:  # died (crash, or its parent thread exited)
                        if worker.task is not None:
                            results[worker.task] = False
                        if not worker.ready:
                            self._failed_starts += 1
                        self._replace(worker)
                    elif worker.task is not None and now > worker.deadline:
                        self.timeouts += 1
                        logger.warning(
                            "accuracy: math-verify overran %.1f s on %r; scored 0.0, worker restarted",
                            timeout,
                            pairs[worker.task][1][:80],
                        )
                        results[worker.task] = False
                        self.max_task_seconds = max(self.max_task_seconds, now - worker.sent)
                        self._replace(worker)
                    elif not worker.ready and now - worker.started > _STARTUP_TIMEOUT:
                        self._failed_starts += 1
                        self._replace(worker)
                if self._failed_starts >= 3 and not any(w.ready for w in self.workers):
                    if not self._broken:
                        logger.error("accuracy: verifier processes fail to start; non-numeric answers score 0.0")
                    self._broken = True
                    for worker in list(self.workers):
                        self._kill(worker)
                    self.workers = []
                    return
                for worker in self.workers:
                    if worker.ready and worker.task is None and pending:
                        index = pending.popleft()
                        gold, pred = pairs[index]
                        message = json.dumps({"gold": gold, "pred": pred, "timeout": timeout}) + "\n"
                        try:
                            worker.proc.stdin.write(message.encode())
                            worker.proc.stdin.flush()
                        except OSError:
                            pending.appendleft(index)
                            continue
                        worker.sent = time.monotonic()
                        self.tasks += 1
                        # kill a little before the limit, so the kill itself still lands within it
                        worker.task, worker.deadline = index, worker.sent + timeout - min(0.05, 0.1 * timeout)
                busy = [w for w in self.workers if w.task is not None]
                if until_ready:
                    if all(w.ready for w in self.workers):
                        return
                elif not busy and not pending:
                    return
                # wait for output until the nearest deadline
                waits = [w.deadline for w in busy] + [
                    w.started + _STARTUP_TIMEOUT for w in self.workers if not w.ready
                ]
                wait = max(0.0, min(waits) - time.monotonic()) + 0.001 if waits else 0.05
                for key in list(selector.get_map().values()):
                    selector.unregister(key.fileobj)
                for worker in self.workers:
                    selector.register(worker.fd, selectors.EVENT_READ, worker)
                for key, _ in selector.select(timeout=min(wait, 1.0)):
                    self._read(key.data, results)
        finally:
            selector.close()

    def _read(self, worker: _Worker, results: list) -> None:
        try:
            chunk = os.read(worker.fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:  # EOF: the process is gone or going; the next loop pass replaces it
            self._kill(worker)
            return
        worker.buffer += chunk
        while b"\n" in worker.buffer:
            line, worker.buffer = worker.buffer.split(b"\n", 1)
            if line == b"ready":
                worker.ready = True
                self._failed_starts = 0
                continue
            if worker.task is None:
                continue
            try:
                verdict = json.loads(line)["verdict"]
            except (ValueError, KeyError, TypeError):
                verdict = False
            results[worker.task] = verdict
            self.max_task_seconds = max(self.max_task_seconds, time.monotonic() - worker.sent)
            worker.task = None


_POOL: VerifierPool | None = None
_POOL_LOCK = threading.Lock()


def get_pool() -> VerifierPool:
    """The process-wide verifier pool (started on first use; a forked child gets its own)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._pid != os.getpid():
            _POOL = VerifierPool()
            atexit.register(_POOL.close)
        return _POOL


def warm_up() -> None:
    """Start the verifier processes now, so the first batch with a non-numeric answer does not wait for them."""
    get_pool().start(wait=True)


def shutdown_pool() -> None:
    """Stop the verifier processes (they also stop at exit); the next call that needs them starts a new pool."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.close()


# ---------------------------------------------------------------------------------------------------------------------
# Inside a verifier process


def _verify_pair(gold: str, pred: str, parse, verify, config) -> bool | None:
    gold_parsed = _parse_cached(gold, parse, config)
    if not gold_parsed:
        return None
    pred_parsed = parse("\\boxed{" + pred + "}", extraction_config=config, parsing_timeout=None)
    if not pred_parsed:
        pred_parsed = parse(pred, parsing_timeout=None)
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


_PARSED_GOLDS: dict[str, list] = {}


def _parse_cached(gold: str, parse, config) -> list:
    if gold not in _PARSED_GOLDS:
        if len(_PARSED_GOLDS) > 4096:
            _PARSED_GOLDS.clear()
        parsed = parse("\\boxed{" + gold + "}", extraction_config=config, parsing_timeout=None)
        _PARSED_GOLDS[gold] = parsed or parse(gold, parsing_timeout=None)
    return _PARSED_GOLDS[gold]


_WARM_UP = [
    ("\\frac{1}{2}", "0.5"),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)"),
    ("x^2+3x-6", "1+2i"),
    ("[1, 2)", "\\{1, 2\\}"),
    ("\\text{(C)}", "30^\\circ"),
]


class _SoftTimeout(Exception):
    pass


def _worker_main() -> None:  # pragma: no cover - runs in the verifier subprocess
    """Serve ``{"gold", "pred", "timeout"}`` lines on stdin with ``{"verdict"}`` lines on stdout."""
    if os.environ.get("RESON_VERIFY_PDEATHSIG") == "1" and sys.platform.startswith("linux"):
        try:  # die with the parent even when it is killed outright
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:
            pass
    parent = os.getppid()

    def watch_parent():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the protocol
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    config = [
        LatexExtractionConfig(boxed_match_priority=0, normalization_config=NormalizationConfig(units=True)),
        ExprExtractionConfig(),
    ]

    def on_alarm(signum, frame):
        raise _SoftTimeout

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the trainer; it closes the pool
    for gold, pred in _WARM_UP:  # warm sympy's caches before saying ready: first calls are slow
        _verify_pair(gold, pred, parse, verify, config)
    out.write("ready\n")
    for line in sys.stdin:
        verdict: bool | None = False
        try:
            request = json.loads(line)
            # a soft deadline a little before the caller's hard one: Python-level loops end here without a restart
            signal.setitimer(signal.ITIMER_REAL, max(0.005, 0.8 * float(request["timeout"])))
            try:
                verdict = _verify_pair(request["gold"], request["pred"], parse, verify, config)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except BaseException:  # noqa: BLE001 - any failure is a wrong answer, never a dead worker
            verdict = False
        out.write(json.dumps({"verdict": verdict}) + "\n")
