"""Per-completion records and their summary: the one definition of the emergence and evaluation metrics, and the
pass@k / maj@k estimators over several samples of a problem.

Training's emergence callback and ``reson eval`` both build ``completion_record``s from ``reson.core.rewards.score``
and
``summarize`` them, so a think-usage or self-correction number means the same thing everywhere.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
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
    ``reson.core.rewards.Score``), and for Countdown its search measures: ``candidates`` tried in the thinking,
    ``rejections`` (candidates the thinking checked, found wrong and moved on from) and ``verified`` (the final answer
    checked in the thinking).
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
        **(getattr(score, "search", None) or {}),
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
    "avg_candidates": "mean candidates tried (Countdown)",
    "rejection_rate": "rejected a candidate and went on (Countdown)",
    "verified_rate": "final answer verified in thinking (Countdown)",
    "rejection_rate_among_thinking": "rejected a candidate and went on, among thinking (Countdown)",
    "reject_then_right_rate": "rejected a candidate, then right (Countdown)",
    "accuracy_when_rejecting": "accuracy when rejecting a candidate (Countdown)",
    "retry_after_wrong": "retry after a candidate shown wrong (Countdown)",
    "retry_after_right": "retry after a candidate shown right (Countdown)",
    "truncation_rate": "truncated",
    "avg_completion_tokens": "mean completion tokens",
    "num_problems": "problems",
}
NOT_RATES = frozenset(
    {"avg_think_tokens", "avg_candidates", "avg_completion_tokens", "num_problems", "count", "ungraded"}
)


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


def cell(key: str, value: float | None) -> str:
    """A metric's value as a table shows it: rates in percent, counts whole, one decimal otherwise."""
    if value is None:
        return "–"
    if key == "num_problems":
        return str(int(value))
    return f"{shown(key, value):.1f}"


def change(key: str, before: float | None, after: float | None) -> str:
    """The change of a metric from ``before`` to ``after``, in its table unit (points for rates)."""
    if before is None or after is None or key == "num_problems":
        return ""
    return f"{shown(key, after) - shown(key, before):+.1f}"


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
    - Countdown records (with search measures) add ``avg_candidates`` (candidate expressions tried in the thinking,
      on average), ``rejection_rate`` (share that rejected a candidate, its value checked and found wrong, and went
      on), ``verified_rate`` (share whose final answer was verified in the thinking), and, for the search habit:
      ``rejection_rate_among_thinking`` (the same share among records that think: the plain rate rises with think
      usage alone), ``reject_then_right_rate`` (share that rejected a candidate and ended right),
      ``accuracy_when_rejecting`` (accuracy of the records that rejected one), and, over the candidates of all
      records, ``retry_after_wrong`` / ``retry_after_right``: the share followed by another candidate among those the
      thinking itself shows wrong / right (does the search act on its own checks?).
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
        **_search_summary([r for r in records if "candidates" in r]),
    }


SEARCH_FIELDS = ("candidates", "rejections", "verified", "checks")  # a Countdown record's search measures
SEARCH_METRICS = (  # their summary over records
    "avg_candidates",
    "rejection_rate",
    "verified_rate",
    "rejection_rate_among_thinking",
    "reject_then_right_rate",
    "accuracy_when_rejecting",
    "retry_after_wrong",
    "retry_after_right",
)


def _search_summary(records: Sequence[dict]) -> dict:
    if not records:
        return {}
    rejecting = [r for r in records if r["rejections"] > 0]
    checks = [c for r in records for c in r.get("checks") or ()]  # [shown right, right, retried] per candidate
    return {
        "avg_candidates": _mean([r["candidates"] for r in records]),
        "rejection_rate": _mean([float(r["rejections"] > 0) for r in records]),
        "verified_rate": _mean([float(bool(r["verified"])) for r in records]),
        "rejection_rate_among_thinking": _mean([float(r["rejections"] > 0) for r in records if r["think_used"]]),
        "reject_then_right_rate": _mean([float(r["rejections"] > 0 and r["accuracy"] == 1.0) for r in records]),
        "accuracy_when_rejecting": _mean([r["accuracy"] or 0.0 for r in rejecting]),
        "retry_after_wrong": _mean([float(retried) for shown, _, retried in checks if not shown]),
        "retry_after_right": _mean([float(retried) for shown, _, retried in checks if shown]),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Several samples per problem: pass@k and maj@k


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k) (Chen et al., 2021)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def maj_at_k(counts: list[int], correct: list[bool], n: int, k: int) -> float:
    """Expected majority-vote correctness of a uniformly random k-subset of n samples.

    `counts[i]` samples gave an answer in group i (`correct[i]` tells whether that group's answer is right);
    the other n - sum(counts) samples gave no answer and never win a vote. A subset where several groups tie
    for the most votes scores the share of the tied groups that are correct; one with no answers scores 0.
    Exact: a dynamic programme over how many samples each group contributes.
    """
    unanswered = n - sum(counts)
    if unanswered < 0 or not 1 <= k <= n or len(counts) != len(correct):
        raise ValueError(f"maj@k needs sum(counts) <= n and 1 <= k <= n, got counts={counts}, n={n}, k={k}")
    # state (drawn, top count, groups at the top, correct groups at the top) -> number of subsets
    states: dict[tuple[int, int, int, int], int] = {(0, 0, 0, 0): 1}
    for count, right in zip(counts, correct, strict=True):
        nxt: dict[tuple[int, int, int, int], int] = defaultdict(int)
        for (drawn, top, tied, tied_right), ways in states.items():
            for x in range(0, min(count, k - drawn) + 1):
                if x == 0 or x < top:
                    key = (drawn + x, top, tied, tied_right)
                elif x == top:
                    key = (drawn + x, top, tied + 1, tied_right + right)
                else:
                    key = (drawn + x, x, 1, int(right))
                nxt[key] += ways * math.comb(count, x)
        states = nxt
    total = 0.0
    for (drawn, top, tied, tied_right), ways in states.items():
        if top > 0 and k - drawn <= unanswered:
            total += ways * math.comb(unanswered, k - drawn) * tied_right / tied
    return total / math.comb(n, k)


def default_ks(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself."""
    ks = [2**i for i in range(n.bit_length()) if 2**i <= n]
    return sorted(set(ks) | {n})


def group_answers(answers: list[str | None], equivalent) -> list[int | None]:
    """Group index per answer (None for no answer): each answer joins the first earlier group it is equivalent
    to. `equivalent(candidate, references) -> list[bool]` compares one answer against the group representatives."""
    reps: list[str] = []
    by_text: dict[str, int] = {}
    groups: list[int | None] = []
    for answer in answers:
        if answer is None or not answer.strip():
            groups.append(None)
            continue
        key = "".join(answer.split())
        if key not in by_text:
            matches = equivalent(answer, reps) if reps else []
            by_text[key] = next((i for i, same in enumerate(matches) if same), len(reps))
            if by_text[key] == len(reps):
                reps.append(answer)
        groups.append(by_text[key])
    return groups
