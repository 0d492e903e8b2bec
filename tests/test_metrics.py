"""Emergence and evaluation metrics: self-correction phrases, per-completion records, their summary."""

from __future__ import annotations

import pytest

from reson.core.metrics import SELF_CORRECTION_PHRASES, completion_record, has_self_correction, summarize
from reson.core.rewards import Score

PHRASES = [
    # (text, expected, why)
    ("Wait, 5+7 is 12, not 13.", True, "wait, capitalised"),
    ("Let me check: 12 * 3 = 36", True, "let me check"),
    ("Actually the total is 40.", True, "actually"),
    ("Hmm, that's not right.", True, "that's not right"),
    ("Hmm, that\u2019s not right.", True, "curly apostrophe"),
    ("Let me  re-check the sum.", True, "re-check, extra space"),
    ("I should recheck this.", True, "recheck"),
    ("I made a MISTAKE above", True, "mistake, upper case"),
    ("Alternatively, count backwards.", True, "alternatively"),
    ("The waiter brought 3 plates.", False, "waiter is not wait"),
    ("She has 5 apples, but gives 2 away.", False, "but is ordinary arithmetic prose"),
    ("Checking: 2+2=4", False, "checking is not in the list (only 'let me check')"),
    ("", False, "empty"),
]


@pytest.mark.parametrize(("text", "expected", "why"), PHRASES, ids=[c[2] for c in PHRASES])
def test_has_self_correction(text, expected, why):
    assert has_self_correction(text) is expected


def test_every_listed_phrase_is_detected():
    for phrase in SELF_CORRECTION_PHRASES:
        assert has_self_correction(f"So {phrase.upper()}, then."), phrase
        assert not has_self_correction(f"So x{phrase}y then."), phrase  # inside a longer word: no


def test_completion_record_counts_in_the_think_part_only():
    right = Score(accuracy=1.0, format=1.0, extracted="18")
    record = completion_record("<think>9*2=18, wait, yes 18</think> <answer>18</answer>", "", right)
    assert record == {"think_used": True, "think_tokens": 4, "self_correction": True, "accuracy": 1.0, "format": 1.0}
    # the phrase after the think block does not count
    after = completion_record("<think>9*2=18</think> wait, 18", "", right)
    assert after["self_correction"] is False

    # prefilled prompt: the completion starts inside the block; a tokenizer counts its tokens instead of words
    def characters(text, add_special_tokens):  # a stand-in tokenizer: one token per character
        assert add_special_tokens is False
        return {"input_ids": list(text)}

    prefilled = completion_record(" actually 18 </think> 18", "Assistant: <think>", right, characters)
    assert (
        prefilled["think_used"] and prefilled["think_tokens"] == len(" actually 18 ") and prefilled["self_correction"]
    )
    assert completion_record("18", "", right, characters)["think_tokens"] == 0
    # an empty or unclosed block is not think use
    assert not completion_record("<think> </think> 18", "", right)["think_used"]
    assert not completion_record("<think>still going", "", right)["think_used"]
    assert completion_record("18", "", right)["think_tokens"] == 0


def test_completion_record_ignores_a_turn_the_model_invented():
    """The thinking of a made-up next turn ("User: ... Assistant: <think> wait ...") is not the model's own."""
    wrong = Score(accuracy=0.0, format=0.25, extracted=None)
    record = completion_record(
        " 9*2=18. User: and 9*3? Assistant: <think> wait, 27 </think> 27", "Assistant: <think>", wrong
    )
    assert record["think_tokens"] == 1 and not record["think_used"] and not record["self_correction"]


def test_summarize():
    records = [
        {"think_used": True, "think_tokens": 10, "self_correction": True, "accuracy": 1.0, "format": 1.0},
        {"think_used": True, "think_tokens": 30, "self_correction": True, "accuracy": 0.0, "format": 0.5},
        {"think_used": False, "think_tokens": 0, "self_correction": False, "accuracy": 0.0, "format": 0.0},
        {"think_used": False, "think_tokens": 0, "self_correction": False, "accuracy": None, "format": 0.25},
    ]
    assert summarize(records) == {
        "accuracy": pytest.approx(1 / 3),  # None is not applicable, not wrong
        "format_compliance": 0.25,
        "think_usage": 0.5,
        "avg_think_tokens": 20.0,  # over the completions that used a think block
        "self_correction_rate": 0.5,
        "self_correction_rate_correct": 0.25,
        "self_correction_rate_among_correct": 1.0,  # the one correct answer self-corrects
        "self_correction_rate_among_thinking": 1.0,  # both completions that think self-correct
        "accuracy_when_self_correcting": 0.5,
        "accuracy_without_self_correction": 0.0,  # the one gradable completion without a correction is wrong
        "count": 4,
    }
    # among correct answers: one of two correct answers self-corrects
    correct = {"think_used": True, "think_tokens": 5, "self_correction": False, "accuracy": 1.0, "format": 1.0}
    assert summarize([*records, correct])["self_correction_rate_among_correct"] == 0.5
    empty = summarize([])
    assert empty["count"] == 0 and empty["accuracy"] == 0.0


def test_summarize_countdown_search():
    """Countdown records add the search measures: the rejecting share among thinking completions (a guess without a
    think block does not dilute it), rejections that end right, and retries after the candidates the thinking itself
    shows wrong against those it shows right."""
    base = {"self_correction": False, "format": 1.0}
    records = [
        # a search: one candidate shown wrong and left, then one shown right, kept; right
        {**base, "think_used": True, "think_tokens": 30, "accuracy": 1.0, "candidates": 2, "rejections": 1,
         "verified": True, "checks": [[False, False, True], [True, True, False]]},
        # a guess worked out without a check: shown wrong, not retried; wrong
        {**base, "think_used": True, "think_tokens": 10, "accuracy": 0.0, "candidates": 1, "rejections": 0,
         "verified": False, "checks": [[False, False, False]]},
        # a right candidate left anyway, then a wrong one answered
        {**base, "think_used": True, "think_tokens": 30, "accuracy": 0.0, "candidates": 2, "rejections": 0,
         "verified": False, "checks": [[True, True, True], [False, False, False]]},
        # a bare guess: no thinking, no candidates
        {**base, "think_used": False, "think_tokens": 0, "accuracy": 1.0, "candidates": 0, "rejections": 0,
         "verified": False, "checks": []},
    ]  # fmt: skip
    summary = summarize(records)
    assert summary["avg_candidates"] == 1.25
    assert summary["rejection_rate"] == 0.25
    assert summary["rejection_rate_among_thinking"] == pytest.approx(1 / 3)
    assert summary["reject_then_right_rate"] == 0.25
    assert summary["accuracy_when_rejecting"] == 1.0
    assert summary["retry_after_wrong"] == pytest.approx(1 / 3)  # 3 shown wrong, 1 retried
    assert summary["retry_after_right"] == 0.5  # 2 shown right, 1 retried
    maths = {**base, "think_used": False, "think_tokens": 0, "accuracy": 1.0}
    assert "avg_candidates" not in summarize([maths])  # maths records have no search measures
