"""math-verify in a pool of worker processes, with a wall-clock bound on every call.

math-verify's own timeout is ``signal.alarm``: whole seconds, main thread only; off the main thread some inputs
(``9^9^9^9``) run for minutes, and some of that time is one C call that no Python-level alarm can interrupt. So math-
verify never runs in the caller. ``VerifierPool.verify(pairs, timeout)`` sends each (gold, prediction) pair to a
persistent worker process (``python -m reson.core.verifier``: no fork of a process that holds torch threads, no
re-import of the caller's ``__main__``, and it works from daemon processes too) and enforces the bound itself:

- a call of n pairs on a pool of k workers returns within ``timeout x ceil(n / k)`` (plus the few milliseconds of a
  kill), counted from the call, waits for a busy or restarting worker included; a pair not verified by then is
  wrong (``TIMED_OUT``), and a worker still busy with it is killed and replaced. A pool has at least two workers, so
  one serves while the other restarts: a pair queued behind an overrun is not lost to the restart;
- the first call of a process waits for the pool to start (about two seconds, once; ``warm_up()`` does it ahead of
  time): that wait is not counted, so no answer is lost to a cold start.

Workers die with their parent: on Linux each is spawned from one long-lived thread of the pool with
``PR_SET_PDEATHSIG``, so it is killed the moment the process dies, however it dies and whichever thread scores;
elsewhere a watcher thread in the worker exits when its parent is gone. Scoring therefore works the same from the main
thread, another thread or a worker process, never raises into the trainer, and leaves nothing running.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import logging
import math
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT = 60.0  # seconds a fresh worker may take to import math-verify and warm up
TIMED_OUT = "timed out"  # the verdict of a pair that ran out of time (wrong, but worth another try later)


@dataclasses.dataclass
class _Worker:
    proc: subprocess.Popen
    started: float
    fd: int = -1
    buffer: bytes = b""
    ready: bool = False
    task: int | None = None
    sent: float = 0.0
    deadline: float = 0.0

    def __post_init__(self):
        self.fd = self.proc.stdout.fileno()


def default_workers() -> int:
    """``RESON_VERIFY_WORKERS``, else the usable cores (2 to 8): with two, one can restart while the other serves."""
    env = os.environ.get("RESON_VERIFY_WORKERS")
    if env:
        return max(1, int(env))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cores = os.cpu_count() or 1
    return max(2, min(cores, 8))


class VerifierPool:
    """Persistent math-verify processes; ``verify`` enforces the wall-clock bound (module docstring).

    ``verify(pairs, timeout)`` returns, for each ``(gold, prediction)``, True/False, or None when the gold cannot be
    parsed. Thread-safe (one call at a time); usable from any thread and from daemon processes.
    """

    def __init__(self, workers: int | None = None):
        self.size = workers or default_workers()
        self.workers: list[_Worker] = []
        self.timeouts = 0  # pairs that ran out of time, since the pool started
        self.restarts = 0
        self.tasks = 0  # pairs sent to math-verify, since the pool started
        self.max_call_seconds = 0.0  # the slowest call, from its start to its return
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._failed_starts = 0
        self._broken = False
        self._ever_ready = False
        self._spawner: ThreadPoolExecutor | None = None
        self._spawning: list = []  # futures of workers being started

    # -- processes

    def _spawn(self) -> None:
        """Start a worker in the background: it joins the pool once its process exists (``_collect``), so a call never
        waits for a fork."""
        if self._spawner is None:  # one long-lived thread forks every worker: PR_SET_PDEATHSIG is tied to it
            self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reson-verifier-spawner")
        self._spawning.append(self._spawner.submit(self._popen))

    def _collect(self) -> None:
        for future in [f for f in self._spawning if f.done()]:
            self._spawning.remove(future)
            try:
                self.workers.append(future.result())
            except OSError:  # the interpreter cannot be started: counts as a failed start
                self._failed_starts += 1

    @staticmethod
    def _popen() -> _Worker:
        env = dict(os.environ, RESON_VERIFY_PARENT=str(os.getpid()))
        env.pop("PYTHONSTARTUP", None)
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "reson.core.verifier"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # a worker that cannot start says why on the caller's stderr
            env=env,
            close_fds=True,
        )
        os.set_blocking(proc.stdout.fileno(), False)
        return _Worker(proc, started=time.monotonic())

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
        self._fill()

    def _fill(self) -> None:
        self._collect()
        if self._failed_starts >= 3 and not any(w.ready for w in self.workers) and not self._broken:
            logger.error("accuracy: verifier processes fail to start; non-numeric answers score 0.0")
            self._broken = True
        while len(self.workers) + len(self._spawning) < self.size and not self._broken:
            self._spawn()

    def start(self, wait: bool = True) -> None:
        """Start the worker processes (if not running) and, with ``wait``, block until they are ready."""
        with self._lock:
            try:
                self._fill()
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
            if self._spawner is not None:
                self._spawner.shutdown(wait=True)  # a worker still being forked is then known, and stopped below
                self._spawner = None
            for future in self._spawning:
                with contextlib.suppress(Exception):
                    self._kill(future.result())
            self._spawning = []
            self.workers = []

    # -- the event loop

    def verify(self, pairs: Sequence[tuple[str, str]], timeout: float) -> list[bool | None | str]:
        """True/False per pair (None: the gold cannot be parsed; ``TIMED_OUT``: not verified within the bound of the
        module docstring)."""
        results: list[bool | None | str] = [TIMED_OUT] * len(pairs)
        if not pairs:
            return results
        with self._lock:
            try:
                self._fill()
                if not self._ever_ready:  # a cold start is waited for, once, outside the bound
                    self._run([], deque(), [], timeout=0.0, until_ready=True)
                started = time.monotonic()
                call_deadline = started + timeout * math.ceil(len(pairs) / max(1, self.size))
                self._run(pairs, deque(range(len(pairs))), results, timeout=timeout, call_deadline=call_deadline)
                self.max_call_seconds = max(self.max_call_seconds, time.monotonic() - started)
            except Exception:  # never raise into the trainer; unfinished pairs stay False
                logger.exception("accuracy: verifier pool failed; unfinished answers scored 0.0")
        return results

    def _run(self, pairs, pending: deque, results: list, timeout: float, until_ready: bool = False, call_deadline=0.0):
        selector = selectors.DefaultSelector()
        margin = min(0.05, 0.1 * timeout)  # kill a little early, so the kill itself lands within the bound
        try:
            while True:
                self._fill()
                now = time.monotonic()
                if not until_ready and now > call_deadline - margin:  # out of time: what is left is wrong
                    for worker in [w for w in self.workers if w.task is not None]:
                        self._overran(worker, pairs, results, timeout)
                    self.timeouts += len(pending)
                    return
                for worker in list(self.workers):
                    if worker.proc.poll() is not None:  # died (crashed, or killed from outside)
                        if worker.task is not None:
                            results[worker.task] = False
                        if not worker.ready:
                            self._failed_starts += 1
                        self._replace(worker)
                    elif worker.task is not None and now > worker.deadline:
                        self._overran(worker, pairs, results, timeout)
                    elif not worker.ready and now - worker.started > STARTUP_TIMEOUT:
                        self._failed_starts += 1
                        self._replace(worker)
                if self._broken and not self._spawning:
                    for worker in list(self.workers):
                        self._kill(worker)
                    self.workers = []
                    return
                for worker in self.workers:
                    if worker.ready and worker.task is None and pending:
                        self._send(worker, pending, pairs, timeout, call_deadline)
                busy = [w for w in self.workers if w.task is not None]
                if until_ready:
                    if self.workers and all(w.ready for w in self.workers) and not self._spawning:
                        return
                elif not busy and not pending:
                    return
                waits = [w.deadline for w in busy] + [w.started + STARTUP_TIMEOUT for w in self.workers if not w.ready]
                if not until_ready:
                    waits.append(call_deadline - margin)
                if self._spawning:
                    waits.append(time.monotonic() + 0.01)  # look again soon: a worker is being forked
                wait = max(0.0, min(waits) - time.monotonic()) + 0.001 if waits else 0.05
                for key in list(selector.get_map().values()):
                    selector.unregister(key.fileobj)
                for worker in self.workers:
                    selector.register(worker.fd, selectors.EVENT_READ, worker)
                for key, _ in selector.select(timeout=min(wait, 1.0)):
                    self._read(key.data, results)
        finally:
            selector.close()

    def _send(self, worker: _Worker, pending: deque, pairs, timeout: float, call_deadline: float) -> None:
        index = pending.popleft()
        gold, pred = pairs[index]
        message = json.dumps({"gold": gold, "pred": pred, "timeout": timeout}) + "\n"
        try:
            worker.proc.stdin.write(message.encode())
            worker.proc.stdin.flush()
        except OSError:
            pending.appendleft(index)
            return
        worker.sent = time.monotonic()
        self.tasks += 1
        margin = min(0.05, 0.1 * timeout)
        worker.task, worker.deadline = index, min(worker.sent + timeout, call_deadline) - margin

    def _overran(self, worker: _Worker, pairs, results: list, timeout: float) -> None:
        self.timeouts += 1
        logger.warning(
            "accuracy: math-verify ran out of its %.1f s on %r; scored 0.0, worker restarted",
            timeout,
            pairs[worker.task][1][:80],
        )
        results[worker.task] = TIMED_OUT
        self._replace(worker)

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
                worker.ready = self._ever_ready = True
                self._failed_starts = 0
                continue
            if worker.task is None:
                continue
            try:
                verdict = json.loads(line)["verdict"]
            except (ValueError, KeyError, TypeError):
                verdict = False
            if verdict == TIMED_OUT:  # stopped by the worker's own soft deadline
                self.timeouts += 1
            results[worker.task] = verdict
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


def current_pool() -> VerifierPool | None:
    """The pool of this process if one was started, without starting one."""
    return _POOL if _POOL is not None and _POOL._pid == os.getpid() else None


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
# Inside a worker process


def verify_pair(gold: str, pred: str, parse, verify, config) -> bool | None:
    """math-verify's verdict on one pair; None when the gold cannot be parsed."""
    gold_parsed = _PARSED_GOLDS.get(gold)
    if gold_parsed is None:
        if len(_PARSED_GOLDS) > 4096:
            _PARSED_GOLDS.clear()
        gold_parsed = _PARSED_GOLDS[gold] = _parse_answer(gold, parse, config)
    if not gold_parsed:
        return None
    return bool(verify(gold_parsed, _parse_answer(pred, parse, config), timeout_seconds=None))


_PARSED_GOLDS: dict[str, list] = {}


def _parse_answer(answer: str, parse, config) -> list:
    """An answer span as math-verify reads it: as the content of a box, else as inline maths, else as it is."""
    for text in ("\\boxed{" + answer + "}", "$" + answer + "$"):
        parsed = parse(text, extraction_config=config, parsing_timeout=None)
        if parsed:
            return parsed
    return parse(answer, parsing_timeout=None)


def extraction_config() -> list:
    """math-verify's own LaTeX normalisation (malformed operators and nits fixed: ``\\frac 34``, ``11\\sqrt2``) with
    units stripped, then plain expressions."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    latex = LatexExtractionConfig(boxed_match_priority=0)
    normalization = dataclasses.replace(latex.normalization_config, units=True)
    return [LatexExtractionConfig(boxed_match_priority=0, normalization_config=normalization), ExprExtractionConfig()]


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


def main() -> None:  # pragma: no cover - runs in the worker process
    """Serve ``{"gold", "pred", "timeout"}`` lines on stdin with ``{"verdict"}`` lines on stdout."""
    parent = int(os.environ.get("RESON_VERIFY_PARENT") or os.getppid())
    if sys.platform.startswith("linux"):  # killed when the thread that forked this process dies: the pool's spawner
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(0)

    def watch_parent():  # where PR_SET_PDEATHSIG does not exist (macOS)
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the protocol
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    from math_verify import parse, verify

    config = extraction_config()

    def on_alarm(signum, frame):
        raise _SoftTimeout

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the caller; it closes the pool
    for gold, pred in _WARM_UP:  # warm sympy's caches before saying ready: first calls are slow
        verify_pair(gold, pred, parse, verify, config)
    out.write("ready\n")
    for line in sys.stdin:
        verdict: bool | None = False
        try:
            request = json.loads(line)
            # a soft deadline a little before the caller's hard one: Python-level loops end here without a restart
            signal.setitimer(signal.ITIMER_REAL, max(0.005, 0.8 * float(request["timeout"])))
            try:
                verdict = verify_pair(request["gold"], request["pred"], parse, verify, config)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _SoftTimeout:
            verdict = TIMED_OUT
        except BaseException:  # noqa: BLE001 - any failure is a wrong answer, never a dead worker
            verdict = False
        out.write(json.dumps({"verdict": verdict}) + "\n")


if __name__ == "__main__":
    main()
