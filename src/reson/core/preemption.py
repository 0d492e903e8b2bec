"""SIGTERM and SIGINT as requests to stop: what spot instances, SLURM's time limit and Colab's disconnects send a
little before they kill a job (30 s to 2 min), and what Ctrl-C sends.

    with stop_requests() as stop:               # the first signal sets stop.signal: a loop checks it and stops
        ...                                     #   where nothing is lost (reson train: after the step, saved)
    with stop_requests(interrupt=True):         # the first signal raises Interrupted where the program is
        ...                                     #   (reson eval: what was scored is on disk already)

The second signal ends the process at once, as the signal would by default: whatever was being written then is
cut short, and the readers pass over what is cut short (a torn checkpoint, the last line of a JSON Lines file).
Blocks nest: an inner block (`reson.training.train.train`, called by the command that has installed the handlers
already) gets the request of the outer one, so a signal that came first is still seen. Outside the main thread,
where Python delivers no signals, nothing is installed; before a block starts (while Python starts and imports),
a signal has its default effect, and nothing has been written then.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)
EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}  # 128 + the signal's number, as a shell reports it


class Interrupted(BaseException):
    """The first SIGTERM or SIGINT, raised where the program was (``stop_requests(interrupt=True)``). A BaseException,
    as KeyboardInterrupt is: the code that must never let a failure stop a run (a reward, the verifier's pool) catches
    Exception, and would otherwise take the signal for a failed answer and go on."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class StopRequest:
    """The signal that asked to stop, None until one has."""

    signal: int | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else ""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signal, 1)


_ACTIVE: list[StopRequest] = []  # the request the installed handlers answer, while a block is open


@contextlib.contextmanager
def stop_requests(interrupt: bool = False) -> Iterator[StopRequest]:
    """Within the block, the first SIGTERM or SIGINT is a request to stop (module docstring); the handlers before it
    are put back after. Inside another block: that block's request."""
    if _ACTIVE:
        yield _ACTIVE[-1]
        return
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum, frame):
        if request.signal is not None:  # the second: at once, as the signal's default action
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        request.signal = signum
        logger.warning("%s received: stopping where nothing is lost (send it again to stop at once)", request.name)
        if interrupt:
            raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handle) for signum in SIGNALS}
    _ACTIVE.append(request)
    try:
        yield request
    finally:
        _ACTIVE.pop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
