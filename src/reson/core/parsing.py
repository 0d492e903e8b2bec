r"""Answer parsing shared by the rewards, the emergence metrics and evaluation.

One module decides what the thinking is, what the final answer is and what number a string stands for, so training
and evaluation can never disagree about it. Everything here is plain string work: no sympy, no math-verify, no eval.

Two prompt styles are handled:

- the prompt ends with ``<think>`` (Dr. GRPO / Open-Reasoner-Zero prefill the tag): the completion starts *inside* the
  think block and carries only the closing ``</think>``;
- any other prompt: the completion opens the block itself (``<think> ... </think> answer``).

>>> split_completion(" 2+3=5 </think> <answer>5</answer>", prompt="... Assistant: <think>")
Parsed(think=' 2+3=5 ', answer=' <answer>5</answer>', closed=True)
>>> print(extract_answer(r"so the total is \boxed{\frac{1}{2}}."))
\frac{1}{2}
>>> parse_gsm8k_gold("She makes 9 * 2 = $18 a day.\n#### 1,234")
'1234'
>>> parse_number("$1,234.50").value
Fraction(2469, 2)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"


@dataclass(frozen=True)
class Parsed:
    """A completion split at its think block.

    ``think``: the text inside the think block (None when there is no think block; an unclosed block runs to the end).
    ``answer``: the text after the last ``</think>`` (the whole completion when there is no think block; "" while the
    block is still open). ``closed``: a ``</think>`` closed the block.
    """

    think: str | None
    answer: str
    closed: bool


def prompt_opens_think(prompt: str | None) -> bool:
    """True when the prompt ends with ``<think>`` (whitespace aside): the completion then starts inside the block."""
    return bool(prompt) and prompt.rstrip().endswith(THINK_OPEN)


def split_completion(completion: str, prompt: str = "") -> Parsed:
    """Split ``completion`` into its think part and its final-answer part.

    - Prompt ending with ``<think>``: the completion starts inside the block, which ends at the last ``</think>``.
    - Otherwise, with a ``<think>`` in the completion: the block starts after the first ``<think>`` (text before it is
      neither thinking nor answer) and ends at the last ``</think>``.
    - Otherwise, with only a ``</think>``: the block is taken to have opened at the start (a prefilled prompt that the
      caller did not pass), so a number mentioned while thinking is still never read as the answer.
    - No tag at all: no think block; the whole completion is the answer.

    The answer is the text after the *last* ``</think>``, cut at any ``<think>`` reopened after it, so nothing said
    inside any think block can count as the final answer.
    """
    completion = completion or ""
    if prompt_opens_think(prompt):
        start = 0
    else:
        opened = completion.find(THINK_OPEN)
        first_close = completion.find(THINK_CLOSE)
        if opened != -1 and (first_close == -1 or opened < first_close):
            start = opened + len(THINK_OPEN)
        elif first_close != -1:
            start = 0
        else:
            return Parsed(think=None, answer=completion, closed=False)
    close = completion.rfind(THINK_CLOSE)
    if close < start:
        return Parsed(think=completion[start:], answer="", closed=False)
    answer = completion[close + len(THINK_CLOSE) :]
    reopened = answer.find(THINK_OPEN)
    if reopened != -1:
        answer = answer[:reopened]
    return Parsed(think=completion[start:close], answer=answer, closed=True)


_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOXED_BARE_RE = re.compile(r"\\boxed +([^\s$\\{}]+)")
_ANSWER_TAG_RE = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)


def last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (or ``\fbox{...}``) in ``text``, nested braces kept; None when none.

    An unbalanced (truncated) last box is skipped in favour of the previous complete one. ``\boxed 5`` also counts.
    """
    if not text:
        return None
    best: tuple[int, str] | None = None
    for match in list(_BOXED_RE.finditer(text))[-50:][::-1]:  # the last complete box; 50 tries bound the work
        depth, i = 1, match.end()
        while i < len(text) and depth:
            char = text[i]
            if char == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
                i += 2
                continue
            depth += (char == "{") - (char == "}")
            i += 1
        if depth == 0:
            best = (match.start(), text[match.end() : i - 1])
            break
    bare = next(reversed(list(_BOXED_BARE_RE.finditer(text))), None)
    if bare is not None and (best is None or bare.start() > best[0]):
        return bare.group(1)
    return None if best is None else best[1]


# A number as people and models write it: sign, currency, thousands commas, decimals, a fraction, a percent sign.
_NUMBER = r"""
    (?<![\w.])                                   # not the tail of a word or of another number
    [-+\u2212]?\s?                               # sign (ASCII or unicode minus)
    (?:\\?[$\u20ac\u00a3\u00a5]\s?)?             # currency ($, \$, euro, pound, yen)
    [-\u2212]?
    (?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?         # 1,234,567 or 1234 with decimals
    (?:\s?/\s?\d+(?:\.\d+)?)?                    # a fraction 3/4
    (?:\s?\\?%)?                                 # percent
    |
    (?<![\w.])[-+\u2212]?\.\d+(?:\s?\\?%)?       # .5
"""
_NUMBER_RE = re.compile(_NUMBER, re.VERBOSE)
# Several numbers offered as candidates at the end of an answer: "17 or 18", "12, 13, 14", "either 3 and 4".
# Several numbers offered as candidates at the end of an answer: "17 or 18", "12, 13, 14", "x = 2 or x = 3". Lists are
# found by walking the (unambiguous) number matches and checking each gap, never by one big regex: a regex over
# "number (separator number)*" backtracks exponentially on inputs such as "1 / 1 / 1 / ... x".
_CANDIDATE_SEP_RE = re.compile(r"(?:\s*,\s*(?:or\s+|and\s+)?|\s+or\s+|\s+and\s+|\s*;\s*)(?:[a-zA-Z]\s*=\s*)?")


def _candidates(text: str, matches: list[re.Match]) -> int:
    """How many of the trailing ``matches`` form one candidate list ending with the last match."""
    count = 1
    for previous, current in zip(reversed(matches[:-1]), reversed(matches[1:]), strict=True):
        if not _CANDIDATE_SEP_RE.fullmatch(text, previous.end(), current.start()):
            break
        count += 1
    return count


def last_number(text: str) -> str | None:
    """The last number in ``text`` as written (``"$1,234.50"``, ``"-3/4"``, ``"45%"``), with any candidates listed
    just before it (``"17 or 18"``) so that a hedge stays visible; None when there is no number."""
    if not text:
        return None
    matches = list(_NUMBER_RE.finditer(text))
    if not matches:
        return None
    first = matches[-_candidates(text, matches)]
    return text[first.start() : matches[-1].end()].strip()


def extract_answer(answer_text: str) -> str | None:
    r"""The final-answer span of the text after the think block.

    In order: the content of the last ``<answer>...</answer>`` (an unclosed last ``<answer>`` runs to the end; a
    ``\boxed{}`` inside it is unwrapped), else the content of the last ``\boxed{...}``, else the last number (with any
    candidates listed just before it). None when there is nothing answer-like.
    """
    if not answer_text:
        return None
    tagged = _ANSWER_TAG_RE.findall(answer_text)
    if tagged:
        span = tagged[-1].strip()
        boxed = last_boxed(span)
        span = boxed.strip() if boxed is not None else span
        return span or None
    boxed = last_boxed(answer_text)
    if boxed is not None:
        return boxed.strip() or None
    return last_number(answer_text)


def parse_gsm8k_gold(solution: str) -> str:
    """The final answer of a GSM8K solution: the text after the last ``####``, thousands commas removed.

    Raises ValueError when there is no ``####``.
    """
    head, sep, tail = solution.rpartition("####")
    if not sep:
        raise ValueError(f"GSM8K solution has no '####' final answer: {solution[-80:]!r}")
    return tail.strip().replace(",", "")


# ---------------------------------------------------------------------------------------------------------------------
# Plain numbers: the fast path that needs no sympy. GSM8K and the miniature answer almost only with these.

_LATEX_NOISE_RE = re.compile(r"\\[,!;: ]|\\(?:left|right)\b|\\displaystyle|~")
_TEXT_WRAP_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox|textrm)\s*\{([^{}]*)\}")
_FRAC_RE = re.compile(r"^([-+]?)\\[dt]?frac\s*\{\s*([-+]?\d+)\s*\}\s*\{\s*(\d+)\s*\}$|^([-+]?)\\[dt]?frac(\d)(\d)$")
# Up to three trailing unit words after a space ("5 cm", "12 dollars", "3 sq ft"), never a maths word ("5 pi").
_UNITS_RE = re.compile(
    r"(?:\s+(?!(?:pi|sqrt|infty|inf|ln|log|sin|cos|tan|exp|and|or|to|times|plus|minus)\b)"
    r"[a-zA-Z\u00b0][a-zA-Z\u00b0.]+(?:\^\{?\d\}?)?){1,3}$"
)
_PLAIN_RE = re.compile(
    r"^([-+]?)(?:\\?[$\u20ac\u00a3\u00a5])?([-+]?)((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)"
    r"(?:/((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?))?(\\?%)?$"
)


@dataclass(frozen=True)
class Number:
    """An exact number read from text; ``percent`` when it was written with a percent sign."""

    value: Fraction
    percent: bool = False


def _clean(text: str) -> str:
    text = text.strip().strip("$").strip()
    for left, right in (("\\(", "\\)"), ("\\[", "\\]")):
        if text.startswith(left) and text.endswith(right):
            text = text[2:-2].strip()
    text = _TEXT_WRAP_RE.sub(r" \1", text)
    text = _LATEX_NOISE_RE.sub("", text).replace("{,}", ",").replace("\u2212", "-").replace("\u2009", "")
    text = re.sub(r"\^\s*\{?\s*\\circ\s*\}?", "", text)  # degrees
    return text.strip().rstrip(".").strip()


def parse_number(text: str | None) -> Number | None:
    r"""Read ``text`` as one plain number, exactly; None when it is anything else.

    Accepts signs, currency symbols, thousands commas, decimals, ``a/b`` and ``\frac{a}{b}``, a percent sign, a few
    trailing unit words (``"5 cm"``, ``"12 dollars"``) and light LaTeX (``\$``, ``\%``, ``\text{}``, ``{,}``, ``\!``).
    Expressions (``2+3``, ``\sqrt{2}``, ``x=4``) are not plain numbers.

    >>> parse_number("-1,234.5")
    Number(value=Fraction(-2469, 2), percent=False)
    >>> parse_number(r"\frac{3}{4}").value
    Fraction(3, 4)
    >>> parse_number("2+3") is None
    True
    """
    if not text or len(text) > 100:
        return None
    text = _clean(text)
    frac = _FRAC_RE.match(text)
    if frac:
        sign, num, den = (frac.group(1), frac.group(2), frac.group(3)) if frac.group(2) else frac.group(4, 5, 6)
        if int(den) == 0:
            return None
        value = Fraction(int(num), int(den))
        return Number(-value if sign == "-" else value)
    match = _PLAIN_RE.match(text) or _PLAIN_RE.match(_UNITS_RE.sub("", text).strip())
    if not match:
        return None
    sign1, sign2, whole, denominator, percent = match.groups()
    if whole.endswith("."):
        whole = whole[:-1]
    value = Fraction(whole.replace(",", ""))
    if denominator is not None:
        den = Fraction(denominator.replace(",", ""))
        if den == 0:
            return None
        value /= den
    if (sign1 == "-") != (sign2 == "-"):
        value = -value
    return Number(value, percent=percent is not None)


def numbers_equal(gold: Number, pred: Number) -> bool:
    """Exact comparison; a percent on one side only also matches its hundredth (``45%`` vs ``0.45``) or the bare
    value (``45%`` vs ``45``), as math-verify does."""
    if gold.value == pred.value:
        return True
    if gold.percent != pred.percent:
        scaled = pred.value / 100 if pred.percent else gold.value / 100
        other = gold.value if pred.percent else pred.value
        return scaled == other
    return False


_HEDGE_RE = re.compile(r"(?:\bor\b|\\lor\b|\\vee\b|\\text\{\s*or\s*\}|\beither\b)", re.IGNORECASE)


def is_hedged(span: str, gold: str = "") -> bool:
    r"""True when an answer span offers alternatives instead of one answer.

    ``17 or 18``, ``\text{ or }``, ``either`` always hedge (unless the gold answer itself says "or"); a list of several
    plain numbers (``12, 13, 14``) hedges when the gold answer is a single plain number.
    """
    if _HEDGE_RE.search(span) and not _HEDGE_RE.search(gold):
        return True
    if parse_number(gold) is None:
        return False
    matches = list(_NUMBER_RE.finditer(span))
    if len(matches) < 2 or span[: matches[0].start()].strip() or span[matches[-1].end() :].strip(" \t\n."):
        return False
    return _candidates(span, matches) == len(matches)  # nothing but numbers and separators: a list of candidates
