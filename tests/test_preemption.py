"""Stop requests: the first SIGTERM or SIGINT reaches the program, wherever it lands.

The end-to-end behaviour (train saves and exits 143, eval flushes and resumes, a second signal stops at once) is
tested in test_train.py and test_evaluate.py with real processes; here, where a signal can land that those cannot
aim at reliably.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from reson.core import countdown, rewards
from reson.core.preemption import Interrupted, stop_requests


def signal_self(*args, **kwargs):
    """Stand-in for a scoring step during which SIGTERM arrives."""
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(1)  # the handler runs here, in the main thread
    raise AssertionError("the signal was not delivered")


@pytest.mark.parametrize("task", ["countdown", "maths"])
def test_a_signal_while_a_reward_scores_stops_the_program_instead_of_scoring_zero(monkeypatch, task):
    # the rewards catch Exception so that a bad completion never takes a run down; a stop request is not one
    if task == "countdown":
        monkeypatch.setattr(countdown, "grade", signal_self)
        row = {"nums": [1, 2, 3], "target": 6}
    else:
        monkeypatch.setattr(rewards, "prepare_gold", signal_self)
        row = {"answer": "6"}
    with pytest.raises(Interrupted), stop_requests(interrupt=True):
        rewards.score_rows(["<think>1+2=3, 3+3=6</think> <answer>1+2+3</answer>"], [row])


def test_without_interrupt_the_signal_is_a_request_and_the_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    with stop_requests() as request:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)
        assert request.signal == signal.SIGTERM  # asked to stop; the program decides where
    assert signal.getsignal(signal.SIGTERM) is before
