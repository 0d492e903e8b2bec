"""Per-completion records and their summary: the one definition of the emergence and evaluation metrics.

Training's emergence callback and ``reson eval`` both build ``completion_record``s from ``reson.core.rewards.score``
and
``summarize`` them, so a think-usage or self-correction number means the same thing everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from reson.core.parsing import split_completion

# Words and phrases that mark a model revisiting its own reasoning, matched as whole words, case-insensitively, in the
# think part only. The union of the lists used by DeepSeek-R1 (Nature 2025), Open-Reasoner-Zero and SimpleRL-Zoo,
# minus "but", "however", "check", "error", "evaluate" and "verify", which ordinary step-by-step arithmetic uses
# without any second thought ("but she gave 3 away", "check: 5 + 7 = 12"); plus explicit corrections. Oat-Zero warns
# that such words are often superficial: report them with correctness (``self_correction_rate_correct``), not alone.
SELF_CORRECTION_PHRASES: tuple[str, ...] = (
    "wait",
    "let me check",
    "let me re-check",
    "let me recheck",
    "let me double-check",
    "let me double check",
    "let me verify",
    "let me reconsider",
    "double-check",
    "actually",
    "that's not right",
    "that is not right",
    "that's wrong",
    "that is wrong",
    "that's incorrect",
    "i was wrong",
    "i made a mistake",
    "mistake",
    "re-check",
    "recheck",
    "rethink",
    "re-evaluate",
    "reconsider",
    "try again",
    "retry",
    "alternatively",
    "oops",
)

_PHRASE_RE = re.compile(
    r"(?<![\w-])(?:"
    + "|".join(re.escape(p).replace("'", "['\u2019]").replace(r"\ ", r"\s+") for p in SELF_CORRECTION_PHRASES)
    + r")(?![\w-])",
    re.IGNORECASE,
)


def self_correction_phrases(text: str | None) -> list[re.Match]:
    """Where ``text`` says one of ``SELF_CORRECTION_PHRASES``, as a whole word or phrase (any case; curly or straight
    apostrophes; any run of whitespace between words), in order. "Waiter" or "actually-" compounds do not count."""
    return list(_PHRASE_RE.finditer(text or ""))


def has_self_correction(text: str | None) -> bool:
    """True when ``text`` holds a self-correction phrase (``self_correction_phrases``)."""
    return bool(text) and _PHRASE_RE.search(text) is not None


def completion_record(completion: str, prompt: str, score, tokenizer=None) -> dict:
    """One completion's metrics.

    ``think_used``: a closed, non-empty think block. ``think_tokens``: the think part's length in ``tokenizer``'s
    tokens when one is given, else in whitespace-separated words (0 without a think block). ``self_correction``: a
    self-correction phrase inside the think part. ``accuracy`` and ``format`` are copied from ``score`` (a
    ``reson.core.rewards.Score``).
    """
    parsed = split_completion(completion or "", prompt or "")
    think = parsed.think or ""
    if not think:
        think_tokens = 0
    elif tokenizer is not None:
        think_tokens = len(tokenizer(think, add_special_tokens=False)["input_ids"])
    else:
        think_tokens = len(think.split())
    return {
        "think_used": bool(parsed.closed and think.strip()),
        "think_tokens": think_tokens,
        "self_correction": has_self_correction(think),
        "accuracy": score.accuracy,
        "format": score.format,
    }


# How each metric of `summarize` and `reson eval` reads in a table: its label; rates (fractions in [0, 1]) are shown in
# percent, the other metrics as they are.
LABELS = {
    "accuracy": "accuracy",
    "format_compliance": "format compliance",
    "think_usage": "think usage",
    "avg_think_tokens": "mean think tokens",
    "self_correction_rate": "self-correction",
    "self_correction_rate_among_thinking": "self-correction among thinking",
    "self_correction_rate_among_correct": "self-correction among correct",
    "self_correction_rate_correct": "self-correcting and correct",
    "accuracy_when_self_correcting": "accuracy when self-correcting",
    "accuracy_without_self_correction": "accuracy without self-correction",
    "truncation_rate": "truncated",
    "avg_completion_tokens": "mean completion tokens",
    "num_problems": "problems",
}
NOT_RATES = frozenset({"avg_think_tokens", "avg_completion_tokens", "num_problems", "count", "ungraded"})


def is_rate(key: str) -> bool:
    """Whether metric ``key`` is a rate (a fraction in [0, 1], shown in percent): every metric but the counts and
    lengths, pass@k and maj@k included."""
    return key not in NOT_RATES


def label(key: str) -> str:
    """``key``'s row label in a table, with its unit: "accuracy (%)", "mean think tokens"."""
    name = LABELS.get(key, key)
    return f"{name} (%)" if is_rate(key) else name


def shown(key: str, value: float) -> float:
    """``value`` of metric ``key`` in the unit tables show: rates in percent."""
    return 100.0 * value if is_rate(key) else value


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def summarize(records: Sequence[dict]) -> dict:
    """Aggregate ``completion_record``s.

    - ``accuracy``: mean accuracy over records whose accuracy is not None (0.0 when there are none).
    - ``format_compliance``: share of records whose format grade is 1.0.
    - ``think_usage``: share of records with ``think_used``.
    - ``avg_think_tokens``: mean ``think_tokens`` over the records that used a think block (0.0 when none did).
    - ``self_correction_rate``: share of records with a self-correction phrase.
    - ``self_correction_rate_correct``: share of records that both self-correct and are correct (accuracy 1.0): the
      keyword counted together with correctness, as Oat-Zero advises.
    - ``self_correction_rate_among_correct``: share of the correct records (accuracy 1.0) that self-correct (0.0 when
      none is correct).
    - ``self_correction_rate_among_thinking``: share of the records with a closed think block that self-correct: the
      honest measure of the habit, since the plain rate rises with think usage alone.
    - ``accuracy_when_self_correcting`` / ``accuracy_without_self_correction``: accuracy among the records that do /
      do not self-correct (0.0 when there are none): does correcting pay?
    - ``count``: number of records.

    Every rate is a fraction in [0, 1] (``RATES``); tables and plots show rates in percent (``shown``).
    """
    count = len(records)
    graded = [r["accuracy"] for r in records if r["accuracy"] is not None]
    thinking = [r["think_tokens"] for r in records if r["think_used"]]
    correcting = [r for r in records if r["self_correction"]]
    not_correcting = [r for r in records if not r["self_correction"]]
    correct = [r for r in records if r["accuracy"] == 1.0]
    return {
        "accuracy": _mean(graded),
        "format_compliance": _mean([float(r["format"] == 1.0) for r in records]),
        "think_usage": _mean([float(r["think_used"]) for r in records]),
        "avg_think_tokens": _mean(thinking),
        "self_correction_rate": _mean([float(r["self_correction"]) for r in records]),
        "self_correction_rate_correct": _mean([float(r["self_correction"] and r["accuracy"] == 1.0) for r in records]),
        "self_correction_rate_among_correct": _mean([float(r["self_correction"]) for r in correct]),
        "self_correction_rate_among_thinking": _mean(
            [float(r["self_correction"]) for r in records if r["think_used"]]
        ),
        "accuracy_when_self_correcting": _mean([r["accuracy"] for r in correcting if r["accuracy"] is not None]),
        "accuracy_without_self_correction": _mean(
            [r["accuracy"] for r in not_correcting if r["accuracy"] is not None]
        ),
        "count": count,
    }
