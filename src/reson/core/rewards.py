r"""Rewards for GRPO: final-answer accuracy (math-verify, bounded time) and a graded think-format reward.

Both follow TRL's reward contract: ``reward(completions, answer, prompts=None, **kwargs) -> list[float | None]``.
Completions may be strings or message lists (``[{"role": "assistant", "content": ...}]``); dataset columns arrive as
keyword arguments (the gold answer is the ``answer`` column); the object's ``__name__`` is the metric key
(``rewards/accuracy/mean``). Rewards are small callable classes so they pickle, and are looked up by name in
``REWARDS``.

What is compared. The final answer is read after the think block (``reson.core.parsing.extract_answer``) and split
into the answers it gives (``answer_items``); the gold answer the same way. Then, in order:

- several different answers against one gold answer: a hedge ("17 or 18", ``71 | 72``, two boxes), wrong;
- plain numbers on both sides: compared exactly, as numbers or as sets of numbers (roots in any order), with no
  sympy (``0.5 = 1/2 = \frac{1}{2}``, ``$1,234 = 1234``, ``90° = 90``), so GSM8K and the miniature never wait;
- the same text is the same answer;
- what can never be a sensible answer and would only keep math-verify busy (``hopeless``: towers such as
  ``10^{10^{10}}``, factorials such as ``1000000!``, deep nesting, huge literals) is wrong at once;
- anything else goes to math-verify (``\sqrt{2}/2 = \frac{1}{\sqrt{2}}``, intervals, tuples, sets) in the verifier
  pool (``reson.core.verifier``), with a wall-clock bound of ``timeout`` seconds per answer: an overrun is wrong.

Scoring never raises and never hangs, from any thread or process; ``DEFAULT_TIMEOUT`` is the one default of the
limit, which the training config, evaluation and ``reson score`` all read.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reson.core import countdown, verifier
from reson.core.parsing import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    CONTRADICTION,
    THINK_CLOSE,
    THINK_OPEN,
    Number,
    answer_items,
    answer_key,
    completion_text,
    cut_invented_turn,
    extract_answer,
    gold_from_solution,
    normalize_unicode,
    numbers_equal,
    parse_number,
    prompt_opens_think,
    split_completion,
)

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0  # seconds per answer (math-verify's own default); ordinary answers verify in ~2 ms
# What can never be a sensible answer, and would keep math-verify busy up to the time limit, scores 0.0 at once
# (``hopeless``). The real answers the limits are set against: GSM8K's, MATH's and the grading data's golds and
# predictions nest brackets at most 4 deep, hold no power above 96^38 and no digit run longer than 16.
MAX_ANSWER_CHARS = 1000  # longer final-answer spans (MATH-500's longest gold: 53 characters)
MAX_NESTING = 10  # deeper bracket nesting: math-verify takes ~0.45 s at 10, ~1.5 s at 20, ~3.5 s at 30
MAX_POWER_DIGITS = 10_000  # a numeric power (or tower) of more digits: 10^{10^{10}}, 9^{9^9}, 2^{2^{2^{2^{2^2}}}}
MAX_FACTORIAL = 100_000  # n! from this n on (1000000! and (10^{6})! run to the limit), and any n!!! (99!!! does)
MAX_LITERAL_DIGITS = 100  # a longer run of digits


# ---------------------------------------------------------------------------------------------------------------------
# Format


def format_score(completion: str, prompt: str = "") -> float:
    """Grade the ``<think>content</think>answer`` structure of one completion (see ``Format``)."""
    completion = cut_invented_turn(completion or "", prompt)  # a turn the model made up is not graded
    prefilled = prompt_opens_think(prompt)
    opens, closes = completion.count(THINK_OPEN), completion.count(THINK_CLOSE)
    if opens + prefilled + closes == 0:
        return 0.0  # the prompt's <think> counts as the completion's own: the same structure gets the same grade
    if opens + prefilled > 1 or closes != 1:
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

    - **0.0**: no ``<think>`` or ``</think>`` tag at all (a prompt ending with ``<think>`` counts as one).
    - **0.25**: tags, but no single closed block followed by an answer: more than one ``<think>`` or ``</think>``
      (repeated blocks, tag spam; with a prefilled prompt any ``<think>`` counts as a repeat), no ``</think>`` (the
      block never closes, also after a prefilled ``<think>``), or only whitespace after ``</think>``.
    - **0.5**: one closed block followed by a non-empty answer, with a flaw: the think block is empty (whitespace
      only), or the opening ``<think>`` is missing (a prompt that did not prefill it), or text comes before
      ``<think>``, or the answer uses ``<answer>`` tags other than as one ``<answer>non-empty</answer>`` pair.
    - **1.0**: exactly ``<think>`` (or the prefilled tag), non-empty thinking, one ``</think>``, then a non-empty
      answer; ``<answer>`` tags optional but, when present, exactly one pair with non-empty content.

    Only the completion up to a turn the model invented itself is graded (``reson.core.parsing.cut_invented_turn``):
    "... </answer>\nUser: ..." is graded as "... </answer>".

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
    """A gold answer, read once: ``text`` for math-verify (None when empty), ``number`` when it is one plain number,
    ``items`` the answers it lists (``"-2, 1"``: two), ``numbers`` their values when all are plain numbers."""

    text: str | None
    number: Number | None = None
    items: tuple[str, ...] = ()
    numbers: tuple[Number, ...] | None = None
    equation: bool = False


_GOLD_CACHE: dict[str, Gold] = {}
_UNPARSEABLE_GOLDS: set[str] = set()  # gold texts math-verify could not parse


def prepare_gold(gold) -> Gold:
    r"""Read a gold answer once (cached by its text): a final answer (``"1,234"``, ``"\frac{1}{2}"``, ``"-2, 1"``), a
    full GSM8K solution (the number after ``####``) or a full MATH solution (its final boxed answers)."""
    key = "" if gold is None else str(gold)
    cached = _GOLD_CACHE.get(key)
    if cached is not None:
        return cached
    text = normalize_unicode(key.strip())
    if "####" in text:
        text = gold_from_solution(text) or ""
    elif "\\boxed" in text or "\\fbox" in text:  # a full solution, or a gold written with boxes
        text = gold_from_solution(text, strict=False) or ""
    text = _strip_math_delimiters(text)
    equation = "=" in text
    items = tuple(answer_items(text, equations=True))
    if not items:
        result = Gold(text=None)
    else:
        numbers = tuple(parse_number(item) for item in items)
        result = Gold(
            text=", ".join(items),
            number=parse_number(text),
            items=items,
            numbers=numbers if all(n is not None for n in numbers) else None,
            equation=equation,
        )
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


def _nesting_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth = max(depth - 1, 0)
    return deepest


_HUGE = float("inf")  # a power's value too large to compute (more than MAX_POWER_DIGITS digits)
_DIGITS_RE = re.compile(r"\d+")
_POWER_START_RE = re.compile(r"(?<![\d.])(?:\d+|[{(]\s*[-+]?\s*\d+\s*[})])\s*\^")
_CLOSING = {"{": "}", "(": ")"}
_MAX_TOWER = 16  # taller numeric towers are hopeless without reading them further


def _power(base, exponent):
    """``base ** exponent`` for non-negative integers, or _HUGE beyond MAX_POWER_DIGITS digits; None if unknown."""
    if base is None or exponent is None:
        return None
    if base in (0, 1):
        return base if exponent else 1
    if exponent == 0:
        return 1
    if base is _HUGE or exponent is _HUGE or exponent > 10 * MAX_POWER_DIGITS:
        return _HUGE
    if exponent * math.log10(base) > MAX_POWER_DIGITS:
        return _HUGE
    return base**exponent


def _read_power(text: str, position: int, height: int = 0) -> tuple[int | float | None, int]:
    """The size of the numeric power at ``text[position:]`` (digits or a bracketed power, then optionally ``^`` and
    an exponent read the same way, right to left: ``9^9^9`` is 9^(9^9); a sign is read past, only the size counts),
    and where it ends. The size is None when the text there is not a plain number or numeric power (``2^{x}``),
    _HUGE when it has more than MAX_POWER_DIGITS digits."""
    while position < len(text) and text[position] in " +-":
        position += 1
    if height > _MAX_TOWER:
        return _HUGE, len(text)
    if position < len(text) and text[position] in _CLOSING:
        closing = _CLOSING[text[position]]
        value, end = _read_power(text, position + 1, height + 1)
        while end < len(text) and text[end] == " ":
            end += 1
        if end >= len(text) or text[end] != closing:
            return None, end
        end += 1
    else:
        match = _DIGITS_RE.match(text, position)
        if match is None:
            return None, position
        value, end = int(match.group()), match.end()
    caret = end
    while caret < len(text) and text[caret] == " ":
        caret += 1
    if caret < len(text) and text[caret] == "^":
        exponent, end = _read_power(text, caret + 1, height + 1)
        value = _power(value, exponent)
    return value, end


def hopeless(pred: str) -> bool:
    """True for an answer that can never be a sensible one and would keep math-verify busy: longer than
    ``MAX_ANSWER_CHARS``, brackets nested deeper than ``MAX_NESTING``, a digit run longer than
    ``MAX_LITERAL_DIGITS``, a numeric power or tower of more than ``MAX_POWER_DIGITS`` digits, a factorial of
    ``MAX_FACTORIAL`` or more (of a number or of a numeric power in brackets), or a factorial of a factorial
    (``n!!!``). One pass over the text and its powers; nothing is evaluated beyond ``MAX_POWER_DIGITS`` digits."""
    if len(pred) > MAX_ANSWER_CHARS or _nesting_depth(pred) > MAX_NESTING:
        return True
    if any(len(m) > MAX_LITERAL_DIGITS for m in _DIGITS_RE.findall(pred)):
        return True
    for match in _POWER_START_RE.finditer(pred):  # each power, inner ones too: 1^{9^{9^9}} is harmless only outside
        if _read_power(pred, match.start())[0] is _HUGE:
            return True
    if "!" not in pred:
        return False
    if "!!!" in pred:
        return True
    opening = _matching_openings(pred)
    for match in re.finditer(r"!", pred):
        end = match.start()
        while end > 0 and pred[end - 1] == " ":
            end -= 1
        if end and pred[end - 1] in ")}":
            operand = pred[opening.get(end - 1, end - 1) + 1 : end - 1]
        else:
            digits = re.search(r"\d+$", pred[max(0, end - MAX_LITERAL_DIGITS - 1) : end])
            operand = digits.group() if digits else ""
        value, stop = _read_power(operand.strip(), 0) if operand.strip() else (None, 0)
        if value is not None and stop == len(operand.strip()) and value >= MAX_FACTORIAL:
            return True
    return False


def _matching_openings(text: str) -> dict[int, int]:
    """Position of each closing ``)`` or ``}`` -> position of its opening bracket, in one pass."""
    stacks: dict[str, list[int]] = {"(": [], "{": []}
    pairs = {")": "(", "}": "{"}
    out = {}
    for i, char in enumerate(text):
        if char in stacks:
            stacks[char].append(i)
        elif char in pairs and stacks[pairs[char]]:
            out[i] = stacks[pairs[char]].pop()
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Scoring


@dataclass
class Score:
    """One completion's scores: ``accuracy`` (1.0, 0.0, or None when the gold answer cannot be parsed), ``format``
    (0.0/0.25/0.5/1.0) and ``extracted``, the final-answer span that was compared (None when none)."""

    accuracy: float | None
    format: float
    extracted: str | None
    search: dict | None = None  # Countdown's search measures (`reson.core.countdown.search_measures`)


_VERIFY = object()  # marker: math-verify must decide
_EQUALS_RE = re.compile(r"(?<![<>!\\])=")  # an equals sign of an equation, not of <= >= !=


def _bracketed(text: str) -> bool:
    """A tuple, interval, set or vector: one answer that holds several values."""
    return text[:1] in "([{" or text.startswith(("\\{", "\\left", "\\begin", "\\langle"))


def compare_answer(span: str, gold: Gold) -> tuple[float | None | object, str]:
    """Decide accuracy without sympy where possible: (1.0, 0.0, or _VERIFY, the prediction math-verify compares)."""
    items = answer_items(span, equations=gold.equation)
    if not items or CONTRADICTION in items:
        return 0.0, span  # nothing, or an equation between two different numbers ("71 = 72")
    if not gold.equation and any(_EQUALS_RE.search(item) for item in items):
        return 0.0, span  # an equation in the unknowns is not a value ("2x - y = 0" against 0)
    if [answer_key(item) for item in items] == [answer_key(item) for item in gold.items]:
        return 1.0, span  # the same answers, written the same way
    distinct = list({answer_key(item): item for item in items}.values())
    numbers = [parse_number(item) for item in items]
    if all(n is not None for n in numbers) and gold.numbers is not None:  # numbers, or roots in any order: exactly
        if len(gold.numbers) == 1:
            if len(distinct) > 1:
                return 0.0, span  # several different answers to one question: a hedge
            return float(numbers_equal(gold.numbers[0], numbers[0])), span
        values, gold_values = sorted(n.value for n in numbers), sorted(n.value for n in gold.numbers)
        if len(set(gold_values)) == len(gold_values):  # distinct roots: repeating one is still the same set
            return float(set(values) == set(gold_values)), span
        return float(values == gold_values), span  # roots with multiplicity: the same multiset
    if len(distinct) > 1 and len(gold.items) == 1 and not _bracketed(gold.text):
        return 0.0, span  # several different answers to one question: a hedge
    pred = ", ".join(distinct)
    if hopeless(pred):
        return 0.0, pred
    return _VERIFY, pred


def _quick_accuracy(completion: str, prompt: str, gold: Gold) -> tuple[float | None | object, str | None, str]:
    """(result or _VERIFY, the extracted span, the prediction to verify)."""
    if gold.text is None:
        return None, None, ""
    parsed = split_completion(completion, prompt)
    span = extract_answer(parsed.answer)
    if span is None:
        return 0.0, None, ""
    span = _strip_math_delimiters(span)
    if not span:
        return 0.0, span, ""
    result, pred = compare_answer(span, gold)
    if result is _VERIFY and gold.text in _UNPARSEABLE_GOLDS:
        return None, span, pred
    return result, span, pred


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
            result, spans[i], pred = _quick_accuracy(completion or "", prompt or "", info)
        except Exception:  # a reward must never take the trainer down
            logger.exception("accuracy: scoring completion %d failed; scored 0.0", i)
            result = 0.0
        if result is _VERIFY:
            key = (info.text, pred)
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
        verdicts = verifier.get_pool().verify(keys, timeout)
        if len(_RESULT_CACHE) > 100_000:
            _RESULT_CACHE.clear()
        for key, verdict in zip(keys, verdicts, strict=True):
            if verdict is not verifier.TIMED_OUT:  # an overrun may be load: the next call tries again
                _RESULT_CACHE[key] = verdict
            if verdict is None:
                _UNPARSEABLE_GOLDS.add(key[0])
            for i in todo[key]:
                results[i] = None if verdict is None else float(verdict is True)
                if verdict is None:
                    _note_unparseable(golds[i])
    return results, spans


@dataclass
class _Tally:
    """Rows so far whose gold answer could not be parsed, and whether that was said (once per process)."""

    rows: int = 0
    warned: bool = False


_UNPARSEABLE = _Tally()


def _note_unparseable(gold) -> None:
    _UNPARSEABLE.rows += 1
    if not _UNPARSEABLE.warned:
        _UNPARSEABLE.warned = True
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
    return _UNPARSEABLE.rows


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


def is_countdown(row: dict) -> bool:
    """A Countdown row: it gives the numbers and the target (the hub's columns), not a gold answer to match."""
    return "nums" in row and "target" in row


def score_rows(
    completions: Sequence, rows: Sequence[dict], prompts: Sequence | None = None, timeout: float = DEFAULT_TIMEOUT
) -> list[Score]:
    """Each completion scored as its row's task asks: a Countdown row (``nums``, ``target``) by the Countdown rules
    (`reson.core.countdown`: 1.0 for an expression that uses exactly the numbers and equals the target, and the
    search measures of its thinking), any other against its gold answer (``answer``, or ``gold`` as `reson eval`'s
    samples call it) by `score`. The format grade is the same for both. Never raises on a completion."""
    texts = [completion_text(c) for c in completions]
    prompt_texts = [completion_text(p) for p in prompts] if prompts is not None else [""] * len(texts)
    scores: list[Score | None] = [None] * len(texts)
    maths = [i for i, row in enumerate(rows) if not is_countdown(row)]
    golds = [rows[i]["answer"] if "answer" in rows[i] else rows[i].get("gold") for i in maths]
    graded_maths = score([texts[i] for i in maths], golds, [prompt_texts[i] for i in maths], timeout)
    for i, result in zip(maths, graded_maths, strict=True):
        scores[i] = result
    for i, row in enumerate(rows):
        if scores[i] is None:
            try:
                graded = countdown.grade(texts[i], row["nums"], row["target"], prompt_texts[i])
                search = countdown.search_measures(texts[i], row["nums"], row["target"], prompt_texts[i])
            except Exception:  # scoring must never take a run down
                logger.exception("countdown: scoring completion %d failed; scored 0.0", i)
                graded, search = countdown.Grade(0.0, countdown.INVALID, None), None
            scores[i] = Score(graded.reward, format_score(texts[i], prompt_texts[i]), graded.answer, search)
    return scores


class Accuracy:
    r"""1.0 when the final answer equals the gold answer, else 0.0; None when the gold answer can't be parsed.

    What is compared and how: the module docstring. A right answer mentioned only while thinking earns nothing, an
    unclosed think block earns nothing, and so does a hedge. ``timeout``: seconds allowed to verify one answer with
    math-verify; an overrun scores 0.0.

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
        pool = verifier.current_pool()
        before = pool.timeouts if pool is not None else 0
        results, spans = score_accuracy(texts, golds, prompt_texts, self.timeout)
        try:  # the trainer's hooks: overruns as a metric, the compared answers as a column of the completions table
            if log_metric is not None:
                pool = verifier.current_pool()
                log_metric("rewards/accuracy/timeouts", float((pool.timeouts if pool is not None else 0) - before))
            if log_extra is not None:
                log_extra("extracted_answer", ["" if s is None else s for s in spans])
        except Exception:
            logger.debug("accuracy: the trainer's logging hooks failed", exc_info=True)
        return results


REWARDS: dict[str, type] = {"accuracy": Accuracy, "format": Format, "countdown": countdown.Countdown}
TASKS = {"accuracy": "math", "countdown": "countdown"}  # the task a reward grades (format grades any completion)

accuracy = Accuracy()
format_reward = Format()


def get_reward(name: str, timeout: float = DEFAULT_TIMEOUT) -> Callable:
    """A reward by name: one of ``REWARDS`` (given ``timeout`` where it grades with math-verify), or, as TRL's own
    ``grpo`` script takes them, a dotted import path to a callable following TRL's reward contract
    (``my_lib.rewards.length_reward``; a module in the current folder is found too). ValueError saying what to change
    otherwise, before any model loads."""
    if name in REWARDS:
        reward = REWARDS[name]
        return reward(timeout=timeout) if getattr(reward, "uses_timeout", False) else reward()
    if "." not in name.strip("."):
        raise ValueError(
            f"unknown reward {name!r}: choose from {', '.join(REWARDS)}, or give a dotted import path "
            "(my_lib.rewards.my_reward)."
        )
    module_name, attribute = name.rsplit(".", 1)
    sys.path.insert(0, os.getcwd())  # as TRL's script: a rewards module beside the recipe, run from its folder
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # ImportError, or the module's own failure: one line either way
        raise ValueError(f"reward {name!r}: cannot import {module_name} ({type(error).__name__}: {error}).") from None
    finally:
        sys.path.remove(os.getcwd())
    reward = getattr(module, attribute, None)
    if reward is None or not callable(reward) or isinstance(reward, type):
        found = "a class" if isinstance(reward, type) else "not callable" if reward is not None else "missing"
        raise ValueError(
            f"reward {name!r}: {attribute} in {module_name} is {found}; point at a function (or an instance) taking "
            "(completions, **kwargs) and returning one float, or None, per completion."
        )
    return reward


def reward_funcs(names: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> list[Callable]:
    """The reward callables for ``names`` in order (``get_reward``), ready for ``GRPOTrainer(reward_funcs=...)``."""
    return [get_reward(name, timeout) for name in ([names] if isinstance(names, str) else names)]
