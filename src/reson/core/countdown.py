r"""Countdown: given 3-4 numbers and a target, write an arithmetic expression that uses each number exactly once and
equals the target. The grammar, the exact arithmetic, the reward, a seeded generator and the search measures.

Rows have the shape of the hub's ``Jiayi-Pan/Countdown-Tasks-3to4``: ``{"nums": [44, 19, 35], "target": 98}``
(the generator adds ``"solution"``).

**The grammar** (``parse_expression``): non-negative integer literals written in ASCII digits, the binary operators
``+ - * /`` and parentheses, with the usual precedence, left to right. Model output is parsed, never run: no
``eval``/``exec``, no sympy. Also read as operators, because they are the same ones in another typeface: ``×``, ``·``,
``⋅``, ``∗`` for ``*``; ``÷`` for ``/``; ``−`` (U+2212) and ``–`` (en dash) for ``-``. Not in the grammar:

- unary minus or plus (``-1+8+6``): the task's operators are binary, and with positive numbers a sign never makes
  an unsolvable instance solvable (``-1+8+6`` is ``8+6-1``), so it only adds ways to write the same thing;
- decimals (``5.2*10`` glues two given numbers into a third; ``3.0`` is not how 3 is given) and digit
  concatenation (``12`` from 1 and 2; ``1 2`` is two numbers with no operator between them);
- a leading zero (``08``), the power operator (``**``, ``^``), ``//``, ``%``, implicit multiplication (``2(3+1)``),
  LaTeX (``\times``), the letter ``x`` for times (no public Countdown reward or sample reads it, and letters
  otherwise never belong to an answer), names, calls, digits of other scripts (``int()`` would read ``٣``) and
  anything else.

Arithmetic is exact (``fractions.Fraction``): ``6/4*8+1`` is 13, and an intermediate fraction is allowed. Bounds, so
any text answers in bounded time from any thread (no signals, no worker process): ``MAX_EXPRESSION_CHARS``
characters, ``MAX_TOKENS`` tokens, ``MAX_DEPTH`` nested parentheses, ``MAX_LITERAL_DIGITS`` digits a literal and
``MAX_VALUE_BITS`` bits for the numerator and denominator of every intermediate value. The parser is a shunting-yard
loop, so depth costs no recursion. Text outside the grammar or the bounds raises ``ExpressionError``.

**The answer** (``final_answer``): the completion is split as for math (``reson.core.parsing.split_completion``: a
``<think>`` prefilled by the prompt, a turn the model invented itself cut off). The answer is the last ``<answer>``
span after the think block (a last tag left unclosed runs to the end; the last ``parsing.MAX_PARSE_CHARS``
characters are read), as for math, with one full stop allowed at its end (a sentence's: no decimal ends it). Several
spans are not a hedge that pays, because only the last one is graded (and the format reward already marks them
down). Without ``<answer>`` tags after the think block, the last non-empty line there is the answer when it is
written only in the grammar's characters (``</think>\n55 + 36 - 7 - 19``): the format reward treats the tags as
optional and the math grader falls back the same way, so a well-formed correct completion is not scored 0.0 for a
missing tag. A line with words in it is no answer: a candidate named in prose ("so 8+6-1, or maybe 6/4*8+1") is
never read. An equation in the thinking alone earns nothing, and an unclosed think block has no answer.

**Correct** (``grade``): the expression uses exactly the given numbers (as a multiset: each once, none missing, none
extra) and equals the target exactly. ``expr = value`` (or ``value = expr``) is accepted when the expression equals
the target and the stated value, a plain integer, does too; a wrong stated value scores 0.0, and so does a chain
(``a = b = c``). Division by zero scores 0.0. The reward is 1.0 or 0.0, never partial credit (the graded format
reward is the project's shaping term); None only when the row itself is unusable (``read_row``).

**The generator** (``problems``): seeded, 3-4 numbers in 1-99, targets in 1-100, every instance solvable under the
grader's own rules (intermediate fractions allowed) and its solution kept; train and test are told apart by a stable
hash of the canonical problem (sorted numbers and target). ``solve`` is the exact search that agrees with the grader
(memoised over multisets): None means no expression the grader accepts exists.

**Search measures** (``search_measures``): candidates tried, candidates rejected, and whether the final answer was
verified in the thinking, counted on the expressions the thinking writes (see the function).

>>> grade("Let me try.</think> <answer>6/4*8+1</answer>", [6, 4, 8, 1], 13).reward
1.0
>>> evaluate("6 ÷ 4 × 8 + 1")
Fraction(13, 1)
>>> solve([44, 19, 35], 98)
'19 + 35 + 44'
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import operator
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from itertools import combinations

from reson.core.parsing import completion_text, last_answer_tag, split_completion

logger = logging.getLogger(__name__)

MAX_EXPRESSION_CHARS = 1_000  # longer text is not an expression (four numbers need ~30 characters)
MAX_TOKENS = 256
MAX_DEPTH = 64  # nested parentheses; 50 redundant pairs around an answer still read
MAX_LITERAL_DIGITS = 9
MAX_VALUE_BITS = 512  # numerator and denominator of every intermediate value
MAX_NUMBERS = 32  # numbers a row may give

# ---------------------------------------------------------------------------------------------------------------------
# The grammar


class ExpressionError(ValueError):
    """Text that is not a Countdown expression, or one without a value (division by zero, out of bounds).

    ``reason``: "syntax", "bounds" or "division by zero"."""

    def __init__(self, message: str, reason: str = "syntax"):
        super().__init__(message)
        self.reason = reason


_OPERATOR_ALIASES = {
    "\u00d7": "*",  # multiplication sign
    "\u00b7": "*",  # middle dot
    "\u22c5": "*",  # dot operator
    "\u2217": "*",  # asterisk operator
    "\u00f7": "/",  # division sign
    "\u2212": "-",  # minus sign
    "\u2013": "-",  # en dash
}
_TOKEN_RE = re.compile(r"\s*(?:([0-9]+)|([-+*/()\u00d7\u00b7\u22c5\u2217\u00f7\u2212\u2013]))")
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
_APPLY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


@dataclass(frozen=True)
class Expression:
    """A parsed expression: ``numbers``, its literals in the order written; ``rpn``, the literals (ints) and
    operators (one of ``+ - * /``) in reverse Polish order."""

    numbers: tuple[int, ...]
    rpn: tuple[int | str, ...]

    def value(self) -> Fraction:
        """The exact value; ExpressionError on a division by zero or an intermediate value out of bounds."""
        stack: list[Fraction] = []
        for token in self.rpn:
            if isinstance(token, int):
                stack.append(Fraction(token))
                continue
            right, left = stack.pop(), stack.pop()
            if token == "/" and right == 0:
                raise ExpressionError("division by zero", "division by zero")
            result = _APPLY[token](left, right)
            if result.numerator.bit_length() > MAX_VALUE_BITS or result.denominator.bit_length() > MAX_VALUE_BITS:
                raise ExpressionError(f"an intermediate value exceeds {MAX_VALUE_BITS} bits", "bounds")
            stack.append(result)
        return stack[0]


def _tokens(text: str) -> list[str]:
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"longer than {MAX_EXPRESSION_CHARS} characters", "bounds")
    tokens: list[str] = []
    position, end = 0, len(text.rstrip())
    while position < end:
        match = _TOKEN_RE.match(text, position)
        if match is None:
            raise ExpressionError(f"unexpected {text[position:end].lstrip()[:1]!r} at {position}")
        number, symbol = match.groups()
        if number is not None:
            if len(number) > MAX_LITERAL_DIGITS:
                raise ExpressionError(f"a number longer than {MAX_LITERAL_DIGITS} digits", "bounds")
            if len(number) > 1 and number[0] == "0":
                raise ExpressionError(f"a number with a leading zero: {number}")
            tokens.append(number)
        else:
            tokens.append(_OPERATOR_ALIASES.get(symbol, symbol))
        if len(tokens) > MAX_TOKENS:
            raise ExpressionError(f"more than {MAX_TOKENS} tokens", "bounds")
        position = match.end()
    return tokens


def parse_expression(text: str) -> Expression:
    """Parse ``text`` under the grammar of the module docstring; ExpressionError when it is anything else.

    Shunting-yard with a check of what may come next (an operand after an operator or ``(``, an operator after an
    operand or ``)``), so unary signs, ``**``, ``//``, empty parentheses and implicit multiplication fail as syntax.
    """
    if not isinstance(text, str):
        raise ExpressionError("not text")
    output: list[int | str] = []
    numbers: list[int] = []
    stack: list[str] = []
    depth = 0
    expect_operand = True
    for token in _tokens(text):
        if expect_operand:
            if token == "(":
                depth += 1
                if depth > MAX_DEPTH:
                    raise ExpressionError(f"parentheses nested deeper than {MAX_DEPTH}", "bounds")
                stack.append(token)
            elif token[0].isdigit():
                numbers.append(int(token))
                output.append(numbers[-1])
                expect_operand = False
            else:
                raise ExpressionError(f"{token!r} where a number or '(' belongs")
        elif token == ")":
            while stack and stack[-1] != "(":
                output.append(stack.pop())
            if not stack:
                raise ExpressionError("unbalanced ')'")
            stack.pop()
            depth -= 1
        elif token in _PRECEDENCE:
            while stack and stack[-1] != "(" and _PRECEDENCE[stack[-1]] >= _PRECEDENCE[token]:
                output.append(stack.pop())
            stack.append(token)
            expect_operand = True
        else:
            raise ExpressionError(f"{token!r} where an operator or ')' belongs")
    if expect_operand:
        raise ExpressionError("empty, or ends with an operator or '('")
    while stack:
        if stack[-1] == "(":
            raise ExpressionError("unbalanced '('")
        output.append(stack.pop())
    return Expression(numbers=tuple(numbers), rpn=tuple(output))


def evaluate(text: str) -> Fraction:
    """The exact value of ``text``; ExpressionError when it is not an expression or has no value."""
    return parse_expression(text).value()


_STATED_RE = re.compile(r"-?[0-9]+")


def parse_answer(text: str) -> tuple[Expression, int | None]:
    """An answer span: an expression, ``expr = value`` or ``value = expr`` (a plain integer value), with an optional
    full stop at the end. Returns (the expression, the stated value or None); ExpressionError otherwise."""
    if not isinstance(text, str):
        raise ExpressionError("not text")
    text = text.strip()
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"longer than {MAX_EXPRESSION_CHARS} characters", "bounds")
    if text.endswith("."):
        text = text[:-1]
    sides = text.split("=")
    if len(sides) == 1:
        return parse_expression(text), None
    if len(sides) > 2:
        raise ExpressionError("an equation chain")
    left, right = (side.strip() for side in sides)
    if _STATED_RE.fullmatch(right) and len(right) <= MAX_LITERAL_DIGITS + 1:
        return parse_expression(left), int(right)
    if _STATED_RE.fullmatch(left) and len(left) <= MAX_LITERAL_DIGITS + 1:
        return parse_expression(right), int(left)
    raise ExpressionError("an equation whose sides are both expressions")


# ---------------------------------------------------------------------------------------------------------------------
# Rows, answers, grades


def _integer(value) -> int | None:
    """An integer from a dataset cell (int, numpy int, integral float, digit string); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        return int(value) if _STATED_RE.fullmatch(value) and len(value) <= MAX_LITERAL_DIGITS + 1 else None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    try:
        return operator.index(value)
    except TypeError:
        return None


def read_row(nums, target) -> tuple[tuple[int, ...], int] | None:
    """A row's numbers and target, checked: 1 to ``MAX_NUMBERS`` integers from 0 to ``MAX_LITERAL_DIGITS`` digits
    and an integer target within ``MAX_VALUE_BITS`` bits; None when the row is unusable (missing, malformed)."""
    if nums is None or target is None or isinstance(nums, (str, bytes, dict)):
        return None
    try:
        numbers = [_integer(n) for n in nums]
    except TypeError:
        return None
    goal = _integer(target)
    limit = 10**MAX_LITERAL_DIGITS
    if not 1 <= len(numbers) <= MAX_NUMBERS or goal is None or goal.bit_length() > MAX_VALUE_BITS:
        return None
    if any(n is None or not 0 <= n < limit for n in numbers):
        return None
    return tuple(numbers), goal


_ANSWER_LINE_RE = re.compile(r"[0-9\s()=.+\-*/\u00d7\u00b7\u22c5\u2217\u00f7\u2212\u2013]+")


def final_answer(completion: str, prompt: str = "") -> str | None:
    """The answer span of a completion (module docstring): the last ``<answer>`` span after the think block, else its
    last non-empty line when that is written only in the grammar's characters; None without one."""
    parsed = split_completion(completion or "", prompt or "")
    if parsed.think is not None and not parsed.closed:
        return None  # the block never closed: no final answer
    tagged = last_answer_tag(parsed.answer)
    if tagged is not None:
        return tagged
    lines = parsed.answer[-MAX_EXPRESSION_CHARS:].strip().splitlines()
    line = lines[-1].strip() if lines else ""
    return line if line and any(c.isdigit() for c in line) and _ANSWER_LINE_RE.fullmatch(line) else None


# What grade() found; "correct" is the only one that scores 1.0, "bad_row" the only one that scores None.
CORRECT = "correct"
WRONG_VALUE = "wrong_value"  # uses the numbers, but its value is not the target
WRONG_NUMBERS = "wrong_numbers"  # a number missing, used twice, or not given
WRONG_STATED = "wrong_stated_value"  # "expr = v" with v not the target
DIVISION_BY_ZERO = "division_by_zero"
INVALID = "invalid"  # not an expression of the grammar, or beyond its bounds
NO_ANSWER = "no_answer"
BAD_ROW = "bad_row"
VERDICTS = (CORRECT, WRONG_VALUE, WRONG_NUMBERS, WRONG_STATED, DIVISION_BY_ZERO, INVALID, NO_ANSWER, BAD_ROW)


@dataclass(frozen=True)
class Grade:
    """One completion's grade: ``reward`` (1.0, 0.0, or None for an unusable row), ``verdict`` (one of
    ``VERDICTS``) and ``answer``, the answer span that was graded (None when there was none)."""

    reward: float | None
    verdict: str
    answer: str | None


def grade_answer(answer: str | None, nums, target) -> Grade:
    """Grade an answer span (``final_answer``'s) against a row; never raises on the answer."""
    row = read_row(nums, target)
    return Grade(None, BAD_ROW, answer) if row is None else _grade(answer, *row)


def _grade(answer: str | None, numbers: tuple[int, ...], goal: int) -> Grade:
    if answer is None or not answer.strip():
        return Grade(0.0, NO_ANSWER, answer)
    try:
        expression, stated = parse_answer(answer)
    except ExpressionError:
        return Grade(0.0, INVALID, answer)
    if sorted(expression.numbers) != sorted(numbers):
        return Grade(0.0, WRONG_NUMBERS, answer)
    try:
        value = expression.value()
    except ExpressionError as error:
        return Grade(0.0, DIVISION_BY_ZERO if error.reason == "division by zero" else INVALID, answer)
    if value != goal:
        return Grade(0.0, WRONG_VALUE, answer)
    if stated is not None and stated != goal:
        return Grade(0.0, WRONG_STATED, answer)
    return Grade(1.0, CORRECT, answer)


def grade(completion: str, nums, target, prompt: str = "") -> Grade:
    """Grade one completion against a row (module docstring); never raises on the completion."""
    row = read_row(nums, target)
    return Grade(None, BAD_ROW, None) if row is None else _grade(final_answer(completion, prompt), *row)


# ---------------------------------------------------------------------------------------------------------------------
# The reward


@dataclass
class _Said:
    """What has been said once per process."""

    bad_row: bool = False


_SAID = _Said()


class Countdown:
    """1.0 when the final answer's expression uses exactly the given numbers and equals the target, else 0.0; None
    for a row whose ``nums`` or ``target`` is unusable. The rules: the module docstring.

    TRL's reward contract: the dataset's ``nums`` and ``target`` columns arrive as keyword arguments; completions and
    prompts as strings or message lists. Missing columns are a configuration error (ValueError); nothing a completion
    says ever raises, and nothing is printed. With the trainer's ``log_extra`` hook, the graded answer spans go to
    the completions table as ``extracted_answer``, as the accuracy reward's do.
    """

    def __init__(self):
        self.__name__ = "countdown"

    def __call__(self, completions, nums=None, target=None, prompts=None, log_extra=None, **kwargs):
        if nums is None or target is None:
            raise ValueError(
                "countdown reward: the dataset needs 'nums' (the numbers to use) and 'target' columns, as "
                "Jiayi-Pan/Countdown-Tasks-3to4 and reson.core.countdown.problems give"
            )
        prompts = prompts if prompts is not None else [""] * len(completions)
        rewards: list[float | None] = []
        answers: list[str] = []
        for i, (completion, numbers, goal, prompt) in enumerate(zip(completions, nums, target, prompts, strict=True)):
            try:
                result = grade(completion_text(completion), numbers, goal, completion_text(prompt))
            except Exception:  # a reward must never take the trainer down
                logger.exception("countdown: grading completion %d failed; scored 0.0", i)
                result = Grade(0.0, INVALID, None)
            if result.verdict == BAD_ROW and not _SAID.bad_row:
                _SAID.bad_row = True
                logger.warning(
                    "countdown: row with nums=%r target=%r cannot be used; such rows get reward None (skipped). "
                    "Check the dataset's nums and target columns.",
                    str(numbers)[:200],
                    str(goal)[:50],
                )
            rewards.append(result.reward)
            answers.append(result.answer or "")
        if log_extra is not None:
            try:
                log_extra("extracted_answer", answers)
            except Exception:
                logger.debug("countdown: the trainer's logging hook failed", exc_info=True)
        return rewards


# ---------------------------------------------------------------------------------------------------------------------
# Solver and generator

SPLITS = ("train", "test")
SIZES = (3, 4)
MIN_NUMBER, MAX_NUMBER = 1, 99
MIN_TARGET, MAX_TARGET = 1, 100
TEST_SHARE_PERCENT = 10  # share of canonical problems that belong to the test split
MAX_SOLVE_NUMBERS = 6

_ATOM, _PRODUCT, _SUM = 3, 2, 1  # precedence of what an expression string is, to place parentheses


def _render(left: tuple[str, int], op: str, right: tuple[str, int]) -> tuple[str, int]:
    precedence = _PRODUCT if op in "*/" else _SUM
    a = left[0] if left[1] >= precedence else f"({left[0]})"
    b = right[0] if right[1] > precedence or (right[1] == precedence and op in "+*") else f"({right[0]})"
    return f"{a} {op} {b}", precedence


def _divide(a, b):
    """a / b exactly, an int when it is one (the search does most of its work in ints, which are fast)."""
    if type(a) is int and type(b) is int:
        return a // b if a % b == 0 else Fraction(a, b)
    value = Fraction(a) / b
    return value.numerator if value.denominator == 1 else value


def _combine(a, b) -> list[tuple[object, str, bool]]:
    """(value, op, swapped) for every binary operation on a and b, either way round."""
    out = [(a + b, "+", False), (a - b, "-", False), (b - a, "-", True), (a * b, "*", False)]
    if b:
        out.append((_divide(a, b), "/", False))
    if a:
        out.append((_divide(b, a), "/", True))
    return out


def _needs(a, target) -> list[tuple[object, str, bool]]:
    """For a known operand a: (b, op, swapped) such that ``a op b`` (``b op a`` when swapped) equals ``target``."""
    out = [(target - a, "+", False), (a - target, "-", False), (target + a, "-", True)]
    if a:
        out += [(_divide(target, a), "*", False), (target * a, "/", True)]
        if target:
            out.append((_divide(a, target), "/", False))
    return out


@lru_cache(maxsize=4096)
def _splits(numbers: tuple[int, ...]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every way to cut a sorted multiset in two non-empty parts, the first no larger, each once."""
    seen, out = set(), []
    for size in range(1, len(numbers) // 2 + 1):
        for chosen in combinations(range(len(numbers)), size):
            part = tuple(numbers[i] for i in chosen)
            rest = tuple(n for i, n in enumerate(numbers) if i not in chosen)
            key = (part, rest) if (size < len(numbers) - size or part <= rest) else (rest, part)
            if key not in seen:
                seen.add(key)
                out.append(key)
    return out


@lru_cache(maxsize=20_000)  # parts of up to half a problem: for 3-4 numbers, single numbers and pairs
def _values(numbers: tuple[int, ...]) -> dict:
    """Every value an expression over the sorted multiset can take, each with one expression: {value: (text,
    precedence)}. Exhaustive; used for parts of up to half a problem."""
    if len(numbers) == 1:
        return {numbers[0]: (str(numbers[0]), _ATOM)}
    out: dict = {}
    for part, rest in _splits(numbers):
        for a, a_text in _values(part).items():
            for b, b_text in _values(rest).items():
                for value, op, swapped in _combine(a, b):
                    if value not in out:
                        out[value] = _render(b_text, op, a_text) if swapped else _render(a_text, op, b_text)
    return out


def _reach(numbers: tuple[int, ...], target) -> tuple[str, int] | None:
    """An expression over the sorted multiset whose value is ``target``, or None: for each cut in two parts, each
    value of the smaller part and each operation, the value the other part must reach, searched the same way."""
    if len(numbers) == 1:
        return (str(numbers[0]), _ATOM) if numbers[0] == target else None
    if len(numbers) == 2:
        return _values(numbers).get(target)
    for part, rest in _splits(numbers):
        for a, a_text in _values(part).items():
            for b, op, swapped in _needs(a, target):
                found = _reach(rest, b)
                if found is not None:
                    return _render(found, op, a_text) if swapped else _render(a_text, op, found)
            if not a and not target:  # 0 * b = 0 for any b
                return _render(a_text, "*", _reach_any(rest))
    return None


def _reach_any(numbers: tuple[int, ...]) -> tuple[str, int]:
    """Some expression over the multiset (their sum)."""
    text = " + ".join(map(str, numbers))
    return text, (_SUM if len(numbers) > 1 else _ATOM)


def solve(nums: Sequence[int], target: int) -> str | None:
    """An expression that uses each of ``nums`` once and equals ``target`` under the grader's rules (+ - * /,
    parentheses, exact fractions allowed along the way), or None when there is none.

    Exhaustive, so None means unsolvable; up to ``MAX_SOLVE_NUMBERS`` numbers (ValueError beyond).
    """
    numbers = tuple(sorted(int(n) for n in nums))
    if not 1 <= len(numbers) <= MAX_SOLVE_NUMBERS:
        raise ValueError(f"solve: 1 to {MAX_SOLVE_NUMBERS} numbers, got {len(numbers)}")
    found = _reach(numbers, int(target))
    return None if found is None else found[0]


def canonical_problem(nums: Sequence[int], target: int) -> str:
    """A problem's identity, whatever the order of its numbers: "19 35 44 -> 98"."""
    return " ".join(str(n) for n in sorted(int(n) for n in nums)) + f" -> {int(target)}"


def split_of(nums: Sequence[int], target: int) -> str:
    """The split a problem belongs to, from a stable hash of its canonical form: the same on every machine."""
    digest = hashlib.sha256(canonical_problem(nums, target).encode()).digest()
    return "test" if int.from_bytes(digest[:4], "big") % 100 < TEST_SHARE_PERCENT else "train"


def _random_expression(
    draw, nums: list[int], operators: str = "+-*/", max_value: int | None = None
) -> tuple[object, object] | None:
    """A random expression over ``nums``, each once: two of the values left (``draw()`` is uniform in [0, 1)) are
    combined by a random operation of ``operators`` until one is left. Returns (its exact value, its tree: a number,
    or (op, left, right)); None on a division by zero, or, with ``max_value``, when a value it computes falls
    outside 0 to ``max_value``."""
    items: list[tuple[object, object]] = [(n, n) for n in nums]
    while len(items) > 1:
        i = int(draw() * len(items))
        j = int(draw() * (len(items) - 1))
        j += j >= i
        (a, left), (b, right) = items[i], items[j]
        op = operators[int(draw() * len(operators))]
        if op == "/" and not b:
            return None
        value = a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else _divide(a, b)
        if max_value is not None and not 0 <= value <= max_value:
            return None
        items = [item for k, item in enumerate(items) if k != i and k != j]
        items.append((value, (op, left, right)))
    return items[0]


def _tree_text(tree) -> tuple[str, int]:
    if isinstance(tree, int):
        return str(tree), _ATOM
    op, left, right = tree
    return _render(_tree_text(left), op, _tree_text(right))


def problems(
    split: str,
    n: int,
    seed: int = 0,
    sizes: tuple[int, ...] = SIZES,
    *,
    numbers: tuple[int, int] = (MIN_NUMBER, MAX_NUMBER),
    targets: tuple[int, int] = (MIN_TARGET, MAX_TARGET),
    operators: str = "+-*/",
    max_value: int | None = None,
) -> list[dict]:
    """``n`` distinct solvable problems of ``split`` ("train" or "test"): ``{"nums", "target", "solution"}``.

    Drawn by construction: the count of numbers uniform over ``sizes``, then numbers uniform in ``numbers`` (1-99)
    and a random expression over them with ``operators`` (``_random_expression``), drawn again until its value is an
    integer in ``targets`` (1-100): that value is the target and the expression the solution, so every problem is
    solvable under the grader's rules (exact fractions along the way included, as ``solve`` and the grader allow).
    Targets come out nearly even over 1-100 (each 0.7% to 1.4% of 10,000 rows); the slower alternative, a uniform
    target kept when ``solve`` finds it reachable, discards about nine draws in ten. With ``max_value``, every value
    the solution computes lies in 0 to ``max_value`` (``TINY``: the miniature's search task). Same split, seed and
    settings, same rows, on any machine.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose 'train' or 'test'.")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}.")
    if not sizes or any(not isinstance(s, int) or not 2 <= s <= MAX_SOLVE_NUMBERS for s in sizes):
        raise ValueError(f"sizes must be counts of numbers from 2 to {MAX_SOLVE_NUMBERS}, got {tuple(sizes)}.")
    if not operators or set(operators) - set(_APPLY):
        raise ValueError(f"operators must be some of + - * /, got {operators!r}.")
    draw = random.Random(f"reson-countdown/{split}/{seed}").random  # a str seed hashes with sha512: stable anywhere
    low, span = numbers[0], numbers[1] - numbers[0] + 1
    rows: list[dict] = []
    seen: set[str] = set()
    size = sizes[int(draw() * len(sizes))]
    misses = 0  # draws in a row that gave nothing new: many means the split is nearly exhausted
    while len(rows) < n:
        if misses > 1_000_000:
            raise ValueError(f"cannot draw {n} distinct {split} problems of sizes {tuple(sizes)}: ask for fewer.")
        misses += 1
        nums = [low + int(draw() * span) for _ in range(size)]
        drawn = _random_expression(draw, nums, operators, max_value)
        if drawn is None or type(drawn[0]) is not int or not targets[0] <= drawn[0] <= targets[1]:
            continue
        target = drawn[0]
        key = canonical_problem(nums, target)
        if key in seen or split_of(nums, target) != split:
            continue
        seen.add(key)
        misses = 0
        rows.append({"nums": nums, "target": target, "solution": _tree_text(drawn[1])[0]})
        size = sizes[int(draw() * len(sizes))]
    return rows


# The miniature's search task (dataset ``tiny_countdown``): three numbers in 1-20, + - *, every value the solution
# computes in 0-100, so a 279k-parameter model can compute each step and check it against the target.
TINY = {"sizes": (3,), "numbers": (1, 20), "targets": (1, 100), "operators": "+-*", "max_value": 100}


# ---------------------------------------------------------------------------------------------------------------------
# Search measures

MAX_THINK_CHARS = 200_000  # the thinking read for the search measures (a 1,536-token completion is ~6,000)
MAX_SIDES = 8  # sides of one statement read ("a = b = c = ..."); the rest is ignored

# The value a statement states: "=", or "is", "equals", "gives", "makes", "yields" written between an expression
# and a number ("44 + 19 is 63", "156 - 117 which equals 39").
_STATED_WORDS_RE = re.compile(
    r"(?<=[0-9)])[ \t]+(?:which[ \t]+|that[ \t]+)?(?:equals|is|gives|makes|yields)[ \t]+(?=[0-9(])"
)
_EXPRESSION_CHARS = r"0-9()=+\-*/\u00d7\u00b7\u22c5\u2217\u00f7\u2212\u2013"
# A run of expression text on one line; "3.5" and "1,000" stay one run, so no part of them reads as a number.
_RUN_RE = re.compile(
    rf"(?:[{_EXPRESSION_CHARS}]|(?<=[0-9])[.,](?=[0-9]))(?:[{_EXPRESSION_CHARS} \t]|(?<=[0-9])[.,](?=[0-9]))*"
)


@dataclass
class _Result:
    """A value the thinking computed: its exact ``value``, the value the text ``stated`` for it (None when none),
    ``key`` (its expression over the given numbers, canonical) and ``used`` (those numbers)."""

    value: Fraction
    stated: Fraction | None
    key: tuple
    used: Counter


def _terms(key: tuple, kind: str, sign: int) -> list[tuple[int, tuple]]:
    return [(s * sign, k) for s, k in key[1]] if key[0] == kind else [(sign, key)]


def _canonical(op: str, left: tuple, right: tuple) -> tuple:
    """The canonical key of ``left op right``: sums and products flattened, their terms sorted, so regrouping and
    reordering (``55+36-7-19``, ``(55-7)+(36-19)``, ``36+55-19-7``) give one key. Distribution is not undone."""
    kind = "+" if op in "+-" else "*"
    terms = _terms(left, kind, 1) + _terms(right, kind, -1 if op in "-/" else 1)
    return (kind, tuple(sorted(terms)))


def _trim(side: str) -> str:
    """A side without the parentheses its run cut in half: "(so 55+36)" gives the run "55+36)"."""
    side = side.strip()
    extra = side.count(")") - side.count("(")
    start, end = 0, len(side)
    while extra > 0 and end > start and side[end - 1] == ")":
        end, extra = end - 1, extra - 1
    while extra < 0 and start < end and side[start] == "(":
        start, extra = start + 1, extra + 1
    return side[start:end].strip()


def _statements(think: str) -> Iterable[tuple[Expression, Fraction | None]]:
    """The arithmetic statements of the thinking, in order: (expression, stated value or None). A statement is a run
    of expression text on one line, its sides split at "="; its expression is the first side that parses with an
    operator in it, its stated value the value of the last other side that parses."""
    think = _STATED_WORDS_RE.sub(" = ", think[:MAX_THINK_CHARS])
    for match in _RUN_RE.finditer(think):
        sides: list[Expression | None] = []
        for side in match.group().split("=", MAX_SIDES)[:MAX_SIDES]:
            side = _trim(side)
            try:
                sides.append(parse_expression(side) if side else None)
            except ExpressionError:
                sides.append(None)
        index = next((i for i, s in enumerate(sides) if s is not None and len(s.numbers) > 1), None)
        if index is None:
            continue
        stated = None
        for i in range(len(sides) - 1, -1, -1):
            if i != index and sides[i] is not None:
                with contextlib.suppress(ExpressionError):
                    stated = sides[i].value()
                break
        yield sides[index], stated


def _compose(expression: Expression, taken: dict[int, _Result]) -> tuple[Fraction, tuple]:
    """Value and canonical key of ``expression`` with the literals at the positions in ``taken`` standing for
    earlier results; ExpressionError on a division by zero or a value out of bounds."""
    stack: list[tuple[Fraction, tuple]] = []
    position = 0
    for token in expression.rpn:
        if isinstance(token, int):
            result = taken.get(position)
            stack.append((result.value, result.key) if result else (Fraction(token), ("n", token)))
            position += 1
            continue
        (b, kb), (a, ka) = stack.pop(), stack.pop()
        if token == "/" and b == 0:
            raise ExpressionError("division by zero", "division by zero")
        value = _APPLY[token](a, b)
        if value.numerator.bit_length() > MAX_VALUE_BITS or value.denominator.bit_length() > MAX_VALUE_BITS:
            raise ExpressionError("out of bounds", "bounds")
        stack.append((value, _canonical(token, ka, kb)))
    return stack[0]


def expression_key(text: str) -> tuple:
    """An expression's identity as `search_measures` compares candidates: the same for reorderings and regroupings of
    ``+ -`` and of ``* /`` (``13*7+4``, ``4+7*13``); ExpressionError when ``text`` is not an expression (or has no
    value)."""
    return _compose(parse_expression(text), {})[1]


def _within(part: Counter, whole: Counter) -> bool:
    return all(whole[k] >= v for k, v in part.items())


@dataclass
class _Attempt:
    used: Counter  # the given numbers its steps consumed
    results: list[_Result]  # its results not yet used by a later step, oldest first
    last: _Result | None = None


def _restates(expression: Expression, stated: Fraction | None, attempt: _Attempt) -> bool:
    """True when ``expression``, over given numbers alone, is one of the attempt's results written again ("6 * 4 =
    25? no: 6 * 4 = 24"): that result then takes the newly stated value."""
    try:
        _, key = _compose(expression, {})
    except ExpressionError:
        return False
    for result in attempt.results:
        if result.key == key:
            if stated is not None:
                result.stated = stated
            return True
    return False


def _attempt_key(attempt: _Attempt) -> tuple:
    return tuple(sorted(r.key for r in attempt.results))


def search_measures(completion: str, nums, target, prompt: str = "") -> dict | None:
    """Countdown's search measures of one completion, counted on the expressions its thinking writes:
    ``{"candidates": int, "rejections": int, "verified": bool, "checks": [[bool, bool, bool], ...]}``; None for an
    unusable row.

    What counts, precisely:

    - *Statements*: runs of expression text in the thinking, on one line (integers, ``+ - * /`` and the answer's
      aliases, parentheses), split at ``=`` (or at "is", "equals", "gives", "makes", "yields" written between an
      expression and a number). The first side with an operator that parses under the answer grammar is the
      statement's expression; the value of the last other side that parses is its stated value. Prose,
      decimals ("3.5"), powers and the like are no statements.
    - *Steps and attempts*: each literal of a statement is a result of the current attempt (an earlier step's value,
      computed or stated, most recent first) or a given number. A statement continues the current attempt when its
      given numbers are still unused by it (a step on its results, or a side step on other numbers: "25-5=20,
      12-4=8, 20+8=28" is one attempt); else, when all its literals are given numbers, it starts a new attempt (a
      number used again: the model went back); else it is not a step over the given numbers, and is either a
      restatement of the last result (its value equals it: "156 - 117 = 39" after "84 + 72 - 83 - 34") whose
      stated value is taken as that result's, or skipped.
    - *Candidates*: the distinct attempts, an attempt being what it computed (its results not used by a later
      step), compared up to reordering and regrouping of ``+ -`` and of ``* /``. An attempt that reaches every
      given number is a full expression ("(95-44)+24"); one that stops short is a candidate too ("12*4=48, too
      big"). Writing an expression out and then evaluating it step by step is one candidate, as is trying it twice.
    - *Rejections*: candidates that were not a solution, by the grader's value or the value the text states
      (not every number used, or a value other than the target), and after which the thinking went on to a
      different candidate. Each distinct candidate counts once.
    - *Checks*: per candidate, in the order first tried, ``[shown right, right, retried]``: whether the thinking shows
      it to be a solution (every number used, and the value it states, or else its computed value, is the target),
      whether it is one (its computed value is the target), and whether a different candidate followed it. So
      P(retry | shown wrong) against P(retry | shown right) is read from the trace's own verdicts; shown right but
      not right is a false accept, right but not shown right a false reject.
    - *Verified*: the final answer (``final_answer``), or an expression equal to it up to reordering and
      regrouping, is a candidate of the thinking stated there to equal the target.

    One pass over the thinking (the first ``MAX_THINK_CHARS`` characters), each statement bounded by the grammar.
    """
    row = read_row(nums, target)
    if row is None:
        return None
    numbers, goal = row
    given = Counter(numbers)
    parsed = split_completion(completion or "", prompt or "")
    attempts: list[_Attempt] = []
    for expression, stated in _statements(parsed.think or ""):
        current = attempts[-1] if attempts else None
        taken: dict[int, _Result] = {}
        fresh: Counter = Counter()
        if current is not None:
            free = list(current.results)
            for position, literal in enumerate(expression.numbers):
                match = next((r for r in reversed(free) if literal in (r.value, r.stated)), None)
                if match is not None:
                    free.remove(match)
                    taken[position] = match
                else:
                    fresh[literal] += 1
        again = current is not None and _restates(expression, stated, current)
        if again:
            continue
        if current is not None and _within(fresh, given - current.used):
            attempt = current
        elif _within(Counter(expression.numbers), given):
            attempt, taken, fresh = _Attempt(Counter(), []), {}, Counter(expression.numbers)
        else:
            if current is not None and current.last is not None:  # a restatement of the last result?
                try:
                    if expression.value() == current.last.value:
                        current.last.stated = stated if stated is not None else current.last.value
                except ExpressionError:
                    pass
            continue
        try:
            value, key = _compose(expression, taken)
        except ExpressionError:
            continue
        used = fresh + sum((r.used for r in taken.values()), Counter())
        result = _Result(value, stated, key, used)
        if attempt is not current:
            attempts.append(attempt)
        attempt.used += fresh
        attempt.results = [r for r in attempt.results if all(r is not t for t in taken.values())] + [result]
        attempt.last = result
    keys = [_attempt_key(a) for a in attempts]
    rejected: set[tuple] = set()
    checks: dict[tuple, list[bool]] = {}  # key -> [shown right, right, retried], filled from the last attempt back
    later: tuple | None = None  # a key seen after the attempt, and whether two different ones were
    later_varied = False
    for i in range(len(attempts) - 1, -1, -1):
        result = attempts[i].results[0]
        complete = len(attempts[i].results) == 1 and result.used == given
        solved = complete and result.value == goal and result.stated in (None, goal)
        followed = later_varied or (later is not None and later != keys[i])
        if not solved and followed:
            rejected.add(keys[i])
        shown = complete and (result.value if result.stated is None else result.stated) == goal
        check = checks.setdefault(keys[i], [shown, complete and result.value == goal, False])  # the last attempt's
        check[2] = check[2] or followed
        later_varied = followed or later_varied
        later = keys[i]
    verified = False
    answer = final_answer(completion, prompt)
    if answer is not None:
        try:
            expression, _ = parse_answer(answer)
            _, answer_key = _compose(expression, {})
        except ExpressionError:
            answer_key = None
        verified = any(
            len(a.results) == 1 and a.results[0].key == answer_key and a.results[0].stated == goal for a in attempts
        )
    first_tried = list(dict.fromkeys(keys))
    return {
        "candidates": len(set(keys)),
        "rejections": len(rejected),
        "verified": verified,
        "checks": [checks[key] for key in first_tried],
    }
