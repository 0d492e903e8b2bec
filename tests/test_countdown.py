"""Countdown: the grammar, the grade of the public rewards' own test cases, the reward's contract, the generator and
the solver against brute force, the search measures, and fuzzing (bombs, nesting, code, unicode, 10,000 random
expressions against an independent evaluator)."""

from __future__ import annotations

import ast
import logging
import pickle
import random
import re
import time
from fractions import Fraction
from itertools import permutations
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reson.core import countdown
from reson.core.countdown import (
    MAX_DEPTH,
    Countdown,
    ExpressionError,
    evaluate,
    grade,
    parse_answer,
    parse_expression,
    problems,
    read_row,
    search_measures,
    solve,
    split_of,
)

# TinyZero's base template ends so: the completion starts inside the think block (research note section 3.1)
PREFILLED = (
    "A conversation between User and Assistant. ... User: Using the numbers [6, 4, 8, 1], create an equation that "
    "equals 13. ... Assistant: Let me solve this step by step.\n<think>"
)
CALL_LIMIT = 1.0  # seconds: a generous wall clock for one grading call (they take well under a millisecond)


def answered(expression: str) -> str:
    """The research note's canonical completion after a prefilled <think>: 'Trying.</think>\\n<answer>X</answer>'."""
    return f"Trying.</think>\n<answer>{expression}</answer>"


P1, T1 = [19, 36, 55, 7], 65
P2, T2 = [6, 4, 8, 1], 13

# The 55 cases of /tmp/research/countdown.md section 2 (ids as there), graded under the TinyZero prompt. Where a public
# reward disagrees, the comment names it (TZ TinyZero, oat, MR1 Mini-R1, nano nano-aha-moment, swift ms-swift, rgym
# reasoning-gym) and says why this reading is the task's.
RESEARCH_CASES = [
    # (id, response after the prefilled <think>, nums, target, reward, verdict, why)
    ("C01", answered("55 + 36 - 7 - 19"), P1, T1, 1.0, "correct", "integers only; all agree"),
    ("C02", answered("6/4*8+1"), P2, T2, 1.0, "correct", "6/4 is 3/2 exactly; 3/2*8+1 = 13; all agree"),
    ("C03", answered(" ((6 / 4) * 8) + 1 "), P2, T2, 1.0, "correct", "redundant parentheses and spaces"),
    ("C04", answered("1 + 8*6/4"), P2, T2, 1.0, "correct", "numbers in another order"),
    ("C05", answered("44 + 19 + 35"), [44, 19, 35], 98, 1.0, "correct", "three numbers (the hub's example row)"),
    ("C06", answered("5*5-2"), [5, 5, 2], 23, 1.0, "correct", "a number given twice is used twice"),
    ("W01", answered("55 + 36 - 7 + 19"), P1, T1, 0.0, "wrong_value", "right numbers, value 103"),
    ("W02", answered("6/6*8+1+4-4"), P2, T2, 0.0, "wrong_numbers", "6 and 4 each used twice"),
    ("W03", answered("8+6-1"), P2, T2, 0.0, "wrong_numbers", "hits 13 but leaves 4 unused"),
    ("W04", answered("6/4*8+1*1"), P2, T2, 0.0, "wrong_numbers", "an extra 1"),
    ("W05", answered("55 + 36 - 7 - 19 + 0"), P1, T1, 0.0, "wrong_numbers", "0 is not given"),
    ("W06", answered("5*2+13"), [5, 5, 2], 23, 0.0, "wrong_numbers", "one 5 missing, 13 not given"),
    # E01, E04: TZ/oat/MR1/nano give no credit (the stated value breaks their multiset and '=' their whitelist), yet
    # Mini-R1's own notebook prompt asks for "<answer> (1 + 2) / 3 = 1 </answer>": a right equation is right.
    ("E01", answered("6/4*8+1 = 13"), P2, T2, 1.0, "correct", "expr = target, the stated value true"),
    # E02: swift cuts at '=' and ignores the stated value, so it pays 1.0 for an answer that states a falsehood
    ("E02", answered("6/4*8+1 = 14"), P2, T2, 0.0, "wrong_stated_value", "the stated value is not the target"),
    ("E03", answered("6/4*8-1 = 13"), P2, T2, 0.0, "wrong_value", "the expression is 11, whatever it states"),
    ("E04", answered("(5+3)*2 = 16"), [5, 3, 2], 16, 1.0, "correct", "the stated value is not one of the numbers"),
    # E05: swift keeps the left side, "13", and scores 0; the equation says the same as E01
    ("E05", answered("13 = 6/4*8+1"), P2, T2, 1.0, "correct", "target = expr reads as expr = target"),
    ("D01", answered("6/(4-4)*8+1"), P2, T2, 0.0, "wrong_numbers", "4 used twice (and a division by zero)"),
    ("D02", answered("3/(5-5)"), [3, 5, 5], 1, 0.0, "division_by_zero", "right numbers, no value"),
    # U01-U03: every public reward accepts unary signs (eval does). Our grammar has binary operators only, as the
    # prompt lists them; with positive numbers a sign never makes an instance solvable (-1+8+6 is 8+6-1).
    ("U01", answered("-1+8+6"), [1, 8, 6], 13, 0.0, "invalid", "unary minus is not in the grammar"),
    ("U02", answered("--6/4*8+1"), P2, T2, 0.0, "invalid", "double unary minus"),
    ("U03", answered("+6/4*8+1"), P2, T2, 0.0, "invalid", "unary plus"),
    ("K01", answered("12*3"), [1, 2, 3], 36, 0.0, "wrong_numbers", "12 glues 1 and 2"),
    # K02: every public reward pays 1.0: \d+ splits 5.2 into the given 5 and 2 and eval reads 5.2. A hack.
    ("K02", answered("5.2*10"), [5, 2, 10], 52, 0.0, "invalid", "a decimal point glues two numbers"),
    ("K03", answered("3.0*5-2"), [3, 5, 2], 13, 0.0, "invalid", "no decimals: 3.0 is not how 3 is given"),
    # K04: TZ pays 1.0 because eval reads "1." as 1.0; here the full stop ends the answer, a sentence's punctuation
    # (the grammar has no decimals, so it cannot glue anything)
    ("K04", answered("6/4*8+1."), P2, T2, 1.0, "correct", "a full stop after the answer"),
    ("K05", answered("6/4*08+1"), P2, T2, 0.0, "invalid", "08 is not how 8 is written"),
    # O01, O02: TZ/oat/MR1/swift/rgym score these 0 (their whitelist is ASCII); the same operators in another face
    ("O01", answered("6 ÷ 4 × 8 + 1"), P2, T2, 1.0, "correct", "÷ and × are / and *"),
    ("O02", answered("55 + 36 − 7 − 19"), P1, T1, 1.0, "correct", "U+2212 is minus"),
    # O03, O04: everyone pays 1.0: a character whitelist lets ** and // through; the task has + - * / only
    ("O03", answered("3**2*1"), [3, 2, 1], 9, 0.0, "invalid", "no power operator"),
    ("O04", answered("7//2*1"), [7, 2, 1], 3, 0.0, "invalid", "no floor division"),
    ("O05", answered("3^2*1"), [3, 2, 1], 9, 0.0, "invalid", "^ is no operator here"),
    ("O06", answered("2(3+1)*1"), [2, 3, 1, 1], 8, 0.0, "invalid", "no implicit multiplication"),
    # O07: rgym pays 1.0 (sympy reads %)
    ("O07", answered("7%4*1"), [7, 4, 1], 3, 0.0, "invalid", "no modulo"),
    ("F01", answered("(6/4*8+1"), P2, T2, 0.0, "invalid", "unbalanced parenthesis"),
    ("F02", answered(""), P2, T2, 0.0, "no_answer", "empty answer (TZ pays its 0.1 format score even so)"),
    # F03: MR1/nano/swift/rgym credit it (they take the first or last span anywhere): thinking is not answering
    (
        "F03",
        "Try <answer>6/4*8+1</answer> ok.</think>\nThe answer is 13.",
        P2,
        T2,
        0.0,
        "no_answer",
        "the only expression is inside the thinking",
    ),
    # F04, F05: MR1/nano/swift take the first span, so a model could lead with its best guess; TZ/rgym and the math
    # grader take the last, as here. Only one span is ever graded, so listing guesses does not pay.
    (
        "F04",
        "x</think>\n<answer>8+6-1</answer> <answer>6/4*8+1</answer>",
        P2,
        T2,
        1.0,
        "correct",
        "two spans: the last counts",
    ),
    (
        "F05",
        "x</think>\n<answer>6/4*8+1</answer> <answer>8+6-1</answer>",
        P2,
        T2,
        0.0,
        "wrong_numbers",
        "two spans: the last counts, and it leaves 4 out",
    ),
    # F06-F08, F13: TZ and oat read only the last line, so a multi-line answer, a trailing newline, a word after
    # the answer or a made-up next turn scores 0: a parsing artefact, not the task
    ("F06", "x</think>\n<answer>\n6/4*8+1\n</answer>", P2, T2, 1.0, "correct", "an answer over several lines"),
    ("F07", answered("6/4*8+1") + "\n", P2, T2, 1.0, "correct", "a newline after </answer>"),
    ("F08", answered("6/4*8+1") + "\nDone.", P2, T2, 1.0, "correct", "text after the answer"),
    # F09: TZ pays 1.0 (it looks for the tag only); with the prefilled <think> the block never closed, so the
    # completion is all thinking, as the math grader reads it
    ("F09", "Trying. <answer>6/4*8+1</answer>", P2, T2, 0.0, "no_answer", "an unclosed think block has no answer"),
    ("F10", "Trying.</think><answer>6/4*8+1</answer>", P2, T2, 1.0, "correct", "</think><answer> on one line"),
    ("F11", answered("6/4*8+1 equals 13"), P2, T2, 0.0, "invalid", "words inside the answer"),
    ("F12", answered("6/4 \\times 8+1"), P2, T2, 0.0, "invalid", "LaTeX is not the prompt's notation"),
    ("F13", answered("6/4*8+1") + "\nUser: thanks", P2, T2, 1.0, "correct", "a made-up user turn after the answer"),
    # H01, H02: every public reward hangs (eval of a power tower, one C call no signal can stop); here ** is syntax
    ("H01", answered("44**19**35"), [44, 19, 35], 98, 0.0, "invalid", "a power tower, answered at once"),
    ("H02", answered("9**9**9"), [9, 9, 9], 27, 0.0, "invalid", "a power tower, answered at once"),
    # H03: its <answer> tag lies beyond the 10,000 characters at the end that are read (MAX_PARSE_CHARS), so no
    # answer is found; a shorter huge literal is refused by the grammar's bounds (test_hostile_answers below)
    ("H03", answered("1" * 5000 + "-" + "1" * 5000), P2, T2, 0.0, "no_answer", "two 5,000-digit literals"),
    # H04: CPython rejects more than 200 nested parentheses, so every public reward scores it wrong; a documented
    # depth bound does the same here (research: "correct (or capped)")
    ("H04", answered("(" * 250 + "6/4*8+1" + ")" * 250), P2, T2, 0.0, "invalid", f"nested deeper than {MAX_DEPTH}"),
    ("H05", answered("(" * 50 + "6/4*8+1" + ")" * 50), P2, T2, 1.0, "correct", "50 redundant pairs still read"),
    ("H06", answered("-" * 100_000 + "6/4*8+1"), P2, T2, 0.0, "no_answer", "100,000 minus signs: tag out of reach"),
    ("X01", answered("__import__('os').getpid()"), P2, T2, 0.0, "invalid", "code is text, never run"),
    ("X02", answered("(1/3)*3*2-1"), [1, 3, 3, 2, 1], 1, 1.0, "correct", "exact: 1/3*3 is 1"),
]


@pytest.mark.parametrize(
    ("case", "completion", "nums", "target", "reward", "verdict", "why"),
    RESEARCH_CASES,
    ids=[f"{c[0]} {c[6]}" for c in RESEARCH_CASES],
)
def test_research_cases(case, completion, nums, target, reward, verdict, why):
    start = time.monotonic()
    result = grade(completion, nums, target, PREFILLED)
    assert time.monotonic() - start < CALL_LIMIT
    assert (result.reward, result.verdict) == (reward, verdict)
    assert Countdown()([completion], nums=[nums], target=[target], prompts=[PREFILLED]) == [reward]


def test_every_research_case_is_in_the_table():
    assert len(RESEARCH_CASES) == 55 and len({c[0] for c in RESEARCH_CASES}) == 55


MORE_CASES = [
    # (completion, prompt, nums, target, reward, why): the rules the research table does not reach
    ("<think>a</think>\n55 + 36 - 7 - 19", "", P1, T1, 1.0, "a bare expression line after the thinking"),
    ("<think>a</think>\n55 + 36 - 7 - 19 = 65.", "", P1, T1, 1.0, "a bare equation line with a full stop"),
    ("<think>a</think> The answer is 55 + 36 - 7 - 19.", "", P1, T1, 0.0, "an expression inside prose is no answer"),
    ("<think>a</think>\n55 + 36 - 7 - 19\nI hope that helps!", "", P1, T1, 0.0, "the last line is prose"),
    ("55 + 36 - 7 - 19", "", P1, T1, 1.0, "no think block: the completion is the answer (as for math)"),
    ("<think>55 + 36 - 7 - 19 = 65</think> I am done.", "", P1, T1, 0.0, "an equation in the thinking alone"),
    ("<think>a</think> <answer>55 + 36 - 7 - 19 = 65 = 65</answer>", "", P1, T1, 0.0, "an equation chain"),
    ("<think>a</think> <answer>55 + 36 - 7 - 19 = 60 + 5</answer>", "", P1, T1, 0.0, "two expressions said equal"),
    ("<think>a</think> <answer>55 + 36 - 7 - 19 = 65.0</answer>", "", P1, T1, 0.0, "a decimal stated value"),
    ("<think>a</think> <answer>[55 + 36] - 7 - 19</answer>", "", P1, T1, 0.0, "brackets are not parentheses"),
    ("<think>a</think> <answer>55 + 36 - 7 - 19", "", P1, T1, 1.0, "an answer tag cut off by the length limit"),
    ("<think>a</think> <answer>\u0665\u0665 + 36 - 7 - 19</answer>", "", P1, T1, 0.0, "Arabic-Indic digits"),
    ("<think>a</think> <answer>\uff15\uff15 + 36 - 7 - 19</answer>", "", P1, T1, 0.0, "full-width digits"),
    ("<think>a</think> <answer>6 \u2217 8 \u22c5 1 \u00f7 4</answer>", "", P2, 12, 1.0, "other multiplication signs"),
    ("<think>a</think> <answer>(55 + 36) \u2013 (7 + 19)</answer>", "", P1, T1, 1.0, "an en dash is a minus"),
    ("<think>a</think> <answer>55 + 36 - 7 - 19</answer> User: ok. Assistant: <answer>1</answer>", "", P1, T1, 1.0,
     "an invented next turn is not graded"),
    (" 2+3=5. User: 55? Assistant: <think>a</think> <answer>55 + 36 - 7 - 19</answer>", PREFILLED, P1, T1, 0.0,
     "an answer given in a made-up turn"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("completion", "prompt", "nums", "target", "reward", "why"), MORE_CASES, ids=[c[5] for c in MORE_CASES]
)
def test_more_cases(completion, prompt, nums, target, reward, why):
    assert grade(completion, nums, target, prompt).reward == reward


ROWS = [
    # (nums, target, usable, why)
    ([44, 19, 35], 98, True, "a hub row"),
    ((44, 19, 35), "98", True, "a tuple and a digit string"),
    ([44.0, 19, 35], 98.0, True, "integral floats (a parquet column read by pandas)"),
    ([0, 5], 5, True, "zero may be given"),
    (None, 98, False, "nums missing"),
    ([44, 19, 35], None, False, "target missing"),
    ("[44, 19, 35]", 98, False, "nums as one string"),
    ([44, "x", 35], 98, False, "a number that is not one"),
    ([44, 19.5, 35], 98, False, "a fraction among the numbers"),
    ([44, -19, 35], 98, False, "a negative number"),
    ([10**12], 98, False, "a number beyond the literal bound"),
    ([], 98, False, "no numbers"),
    ([44, 19, 35], 98.5, False, "a fractional target"),
    ([True, 19], 20, False, "a bool is not a number"),
]


@pytest.mark.parametrize(("nums", "target", "usable", "why"), ROWS, ids=[r[3] for r in ROWS])
def test_rows(nums, target, usable, why):
    assert (read_row(nums, target) is not None) == usable
    result = grade(answered("44 + 19 + 35"), nums, target, PREFILLED)
    assert (result.reward is None) == (not usable)


GRAMMAR = [
    # (text, value or None when it is no expression, why)
    ("6/4*8+1", Fraction(13), "precedence and an exact fraction along the way"),
    ("8-4-2", Fraction(2), "left to right"),
    ("16/4/2", Fraction(2), "left to right"),
    ("8-(4-2)", Fraction(6), "parentheses"),
    ("2*3+4*5", Fraction(26), "products before sums"),
    ("1/3", Fraction(1, 3), "a fraction is a value"),
    ("7", Fraction(7), "a single number"),
    ("  ( 7 ) ", Fraction(7), "spaces and parentheses around it"),
    ("1\n+\t2", Fraction(3), "any white space"),
    ("2 3", None, "two numbers with no operator"),
    ("()", None, "empty parentheses"),
    ("", None, "nothing"),
    ("1+", None, "ends with an operator"),
    ("(1+2))", None, "unbalanced"),
    ("1 + x", None, "a name"),
    ("1e3", None, "scientific notation"),
    ("1_000", None, "Python's digit separator"),
    ("0", Fraction(0), "zero"),
    ("999999999", Fraction(999999999), "the longest literal"),
    ("1000000000", None, "one digit too many"),
]


@pytest.mark.parametrize(("text", "value", "why"), GRAMMAR, ids=[g[2] for g in GRAMMAR])
def test_grammar(text, value, why):
    if value is None:
        with pytest.raises(ExpressionError):
            evaluate(text)
    else:
        assert evaluate(text) == value


def test_division_by_zero_and_bounds_are_told_apart():
    with pytest.raises(ExpressionError) as error:
        evaluate("3/(5-5)")
    assert error.value.reason == "division by zero"
    with pytest.raises(ExpressionError) as error:
        evaluate("999999999*" * 60 + "1")  # 60 nine-digit factors: past MAX_VALUE_BITS
    assert error.value.reason == "bounds"
    assert parse_expression("(1+2)*3").numbers == (1, 2, 3)
    assert parse_answer("13 = 6/4*8+1.") == (parse_expression("6/4*8+1"), 13)


# ------------------------------------------------------------------------------------------------- the reward


def test_trl_calling_contract():
    """GRPOTrainer passes prompts, completions (strings or message lists), completion_ids, trainer_state, log_metric,
    log_extra and every dataset column; the reward takes them all and returns one value per completion."""
    logged = {}
    reward = Countdown()
    assert reward.__name__ == "countdown"  # TRL's metric key: rewards/countdown/mean
    values = reward(
        prompts=[[{"role": "user", "content": "Using [44, 19, 35] make 98."}]] * 3,
        completions=[
            [{"role": "assistant", "content": "<think>a</think> <answer>44 + 19 + 35</answer>"}],
            [{"role": "assistant", "content": "<think>a</think> <answer>44 + 19 - 35</answer>"}],
            [{"role": "assistant", "content": "<think>a</think> <answer>44 + 19 + 35</answer>"}],
        ],
        completion_ids=[[1], [2], [3]],
        nums=[[44, 19, 35], [44, 19, 35], None],
        target=[98, 98, 98],
        trainer_state=object(),
        log_metric=lambda name, value: logged.setdefault(name, value),
        log_extra=lambda column, values: logged.setdefault(column, values),
    )
    assert values == [1.0, 0.0, None]  # None: the third row has no numbers
    assert logged == {"extracted_answer": ["44 + 19 + 35", "44 + 19 - 35", ""]}


def test_missing_columns_are_a_clear_error():
    with pytest.raises(ValueError, match="'nums'"):
        Countdown()(["<think>a</think> 1"], target=[1])


def test_unusable_rows_are_warned_once(caplog, monkeypatch):
    monkeypatch.setattr(countdown._SAID, "bad_row", False)
    with caplog.at_level(logging.WARNING, logger="reson.core.countdown"):
        assert Countdown()(["x"] * 2, nums=[None, "bad"], target=[1, 1]) == [None, None]
        assert Countdown()(["x"], nums=[None], target=[1]) == [None]
    assert sum("cannot be used" in r.getMessage() for r in caplog.records) == 1


def test_pickles():
    clone = pickle.loads(pickle.dumps(Countdown()))
    assert clone.__name__ == "countdown"
    assert clone([answered("44 + 19 + 35")], nums=[[44, 19, 35]], target=[98], prompts=[PREFILLED]) == [1.0]


def test_nothing_is_printed(capsys):
    Countdown()([answered(g[0]) for g in GRAMMAR], nums=[[1, 2]] * len(GRAMMAR), target=[3] * len(GRAMMAR))
    assert capsys.readouterr() == ("", "")


# ------------------------------------------------------------------------------------------------- generator, solver


def test_problems_have_the_hub_shape_and_are_solved():
    rows = problems("train", 500, seed=0)
    assert len(rows) == 500
    for row in rows:
        assert set(row) == {"nums", "target", "solution"}
        assert len(row["nums"]) in (3, 4) and all(type(n) is int and 1 <= n <= 99 for n in row["nums"])
        assert type(row["target"]) is int and 1 <= row["target"] <= 100
        assert grade(f"<think>a</think> <answer>{row['solution']}</answer>", row["nums"], row["target"]).reward == 1.0
    assert {len(r["nums"]) for r in rows} == {3, 4}
    assert len({countdown.canonical_problem(r["nums"], r["target"]) for r in rows}) == 500  # distinct


def test_problems_are_deterministic_and_pinned():
    """The same rows on every machine: the first test row for seed 0 is pinned (a str seed hashes with sha512)."""
    assert problems("test", 50, seed=3) == problems("test", 50, seed=3)
    assert problems("test", 50, seed=3) != problems("test", 50, seed=4)
    assert problems("test", 1, seed=0) == [PINNED_FIRST_TEST_ROW]
    assert countdown.canonical_problem([44, 19, 35], 98) == "19 35 44 -> 98"
    assert split_of([44, 19, 35], 98) == split_of([35, 44, 19], 98)  # the order of the numbers does not matter


PINNED_FIRST_TEST_ROW = {"nums": [35, 11, 61], "target": 85, "solution": "35 - (11 - 61)"}


def test_train_and_test_do_not_overlap():
    train = {countdown.canonical_problem(r["nums"], r["target"]) for r in problems("train", 3000, seed=1)}
    test = {countdown.canonical_problem(r["nums"], r["target"]) for r in problems("test", 300, seed=1)}
    assert not train & test
    rng = random.Random(0)
    share = sum(split_of([rng.randint(1, 99) for _ in range(4)], rng.randint(1, 100)) == "test" for _ in range(5000))
    assert 0.08 < share / 5000 < 0.12  # TEST_SHARE_PERCENT = 10


def test_generation_is_fast():
    start = time.monotonic()
    problems("train", 10_000, seed=2)
    assert time.monotonic() - start < 15.0  # ~1 s on the project's CPU box; generous for a busy machine


def test_the_miniatures_problems_stay_small():
    """`TINY`: three numbers in 1-20, + - * only, and every value the solution computes in 0-100, so a tiny model
    can compute each step; still solvable under the grader, deterministic, and split by the same hash."""
    rows = problems("train", 2000, seed=0, **countdown.TINY)
    assert rows == problems("train", 2000, seed=0, **countdown.TINY)
    for row in rows:
        assert len(row["nums"]) == 3 and all(1 <= n <= 20 for n in row["nums"]) and 1 <= row["target"] <= 100
        assert "/" not in row["solution"]
        assert grade(f"<answer>{row['solution']}</answer>", row["nums"], row["target"]).reward == 1.0
        assert split_of(row["nums"], row["target"]) == "train"
    values = []  # every intermediate value of the solutions, read back from their trees
    for row in rows[:300]:
        expression = parse_expression(row["solution"])
        stack: list[int] = []
        for token in expression.rpn:
            if isinstance(token, int):
                stack.append(token)
            else:
                b, a = stack.pop(), stack.pop()
                stack.append(a + b if token == "+" else a - b if token == "-" else a * b)
                values.append(stack[-1])
    assert min(values) >= 0 and max(values) <= 100
    assert {r["solution"].count("*") > 0 for r in rows} == {True, False}  # products and sums both


def test_problem_arguments_are_checked():
    with pytest.raises(ValueError, match="operators"):
        problems("train", 1, operators="+^")
    with pytest.raises(ValueError, match="split"):
        problems("validation", 1)
    with pytest.raises(ValueError, match="n must"):
        problems("train", -1)
    with pytest.raises(ValueError, match="sizes"):
        problems("train", 1, sizes=(1,))


def _all_expressions(nums: list[int]) -> set[str]:
    """Every fully parenthesised expression over nums, each once: all orders, tree shapes and operators."""

    def trees(items):
        if len(items) == 1:
            yield items[0]
            return
        for cut in range(1, len(items)):
            for left in trees(items[:cut]):
                for right in trees(items[cut:]):
                    for op in "+-*/":
                        yield f"({left} {op} {right})"

    return {text for order in set(permutations(map(str, nums))) for text in trees(list(order))}


@pytest.mark.parametrize(
    "nums", [[1, 2, 3], [5, 5, 2], [6, 4, 8], [7, 7, 7], [2, 3, 97], [1, 1, 1, 1], [3, 8, 3, 8], [6, 4, 8, 1]]
)
def test_solver_agrees_with_the_grader_by_brute_force(nums):
    """The targets 1-100 that some expression reaches, graded by the grader itself, are exactly those solve()
    solves: intermediate fractions allowed on both sides ([3, 8, 3, 8] makes 24 only as 8 / (3 - 8/3))."""
    reached = set()
    for text in _all_expressions(nums):
        try:
            value = evaluate(text)
        except ExpressionError:
            continue  # a division by zero
        if value.denominator == 1 and 1 <= value <= 100:
            assert countdown.grade_answer(text, nums, int(value)).reward == 1.0
            reached.add(int(value))
    solved = {t for t in range(1, 101) if solve(nums, t) is not None}
    assert solved == reached
    for target in solved:
        assert countdown.grade_answer(solve(nums, target), nums, target).reward == 1.0


def test_solver_finds_fraction_only_solutions_and_knows_impossible_ones():
    assert evaluate(solve([3, 8, 3, 8], 24)) == 24  # 8 / (3 - 8 / 3): no solution keeps to integers
    assert solve([1, 1, 1], 100) is None
    assert solve([5], 5) == "5"
    with pytest.raises(ValueError, match="numbers"):
        solve(list(range(1, 9)), 1)


# ------------------------------------------------------------------------------------------------- search measures

N1, G1 = [84, 83, 72, 34], 39  # the trace of Gandhi et al. 2025, Fig. 1

SEARCH = [
    # (thinking then answer, nums, target, (candidates, rejections, verified), why)
    (
        "Let's try 84 + 83 - 72 - 34. This gives us 167 - 106 which equals 61. That's still not 39. Let's try "
        "84 + 72 - 83 - 34. This gives us 156 - 117 which equals 39.</think> <answer>84 + 72 - 83 - 34</answer>",
        N1, G1, (2, 1, True),
        "Gandhi et al.'s trace: two candidates, the first rejected; '156 - 117 which equals 39' restates the second",
    ),
    (
        "Let me try 44 + 19 + 35.</think> <answer>44 + 19 + 35</answer>",
        [44, 19, 35], 98, (1, 0, False),
        "guess and stop: a candidate, but no value stated for it, so not verified",
    ),
    (
        "44 + 19 is 63, 63 + 35 is 98.</think> <answer>35 + 44 + 19</answer>",
        [44, 19, 35], 98, (1, 0, True),
        "steps chained on their results make one candidate; 'is' states a value; reordered, still the answer",
    ),
    (
        "55 + 36 - 7 - 19 = 65. Check: 55 + 36 = 91, 91 - 7 = 84, 84 - 19 = 65.</think> <answer>55+36-7-19</answer>",
        P1, T1, (1, 0, True),
        "an expression and its step-by-step check are one candidate",
    ),
    (
        "25 - 5 = 20, 12 - 4 = 8, 20 + 8 = 28.</think> <answer>(25-5)+(12-4)</answer>",
        [25, 5, 12, 4], 28, (1, 0, True),
        "side steps on unused numbers belong to the same attempt",
    ),
    (
        "12 * 4 = 48, too big. 25 - 5 = 20 ... no. 12 + 4 = 16, 16 + 25 - 5 = 36.</think> <answer>12+4+25-5</answer>",
        [12, 4, 25, 5], 36, (2, 1, True),
        "'12 * 4 = 48' and the side step '25 - 5' were one abandoned attempt; going back to 12 starts another",
    ),
    (
        "95 - 44 = 51. Then 51 + 24 = 75, not 86. Let's try 95 + 24 = 119, 119 - 44 = 75. What about 95 - 24 = 71, "
        "71 + 44 = 115. No.</think> <answer>95-44+24</answer>",
        [95, 44, 24], 86, (2, 1, False),
        "(95-44)+24 and (95+24)-44 are one candidate; the last candidate is followed by nothing; answer unverified",
    ),
    (
        "6 * 4 = 25? no: 6 * 4 = 24, 24 - 8 = 16, 16 - 1 = 15. Try 6 × 8 = 48, 48 / 4 = 12, 12 + 1 = 13."
        "</think> <answer>6×8/4+1</answer>",
        P2, T2, (2, 1, True),
        "a miscomputed step is still read; × is *",
    ),
    (
        "55 + 36 - 7 - 19 = 60. Hmm, that's not it. 55 - 7 + 36 - 19 = 65.</think> <answer>55-7+36-19</answer>",
        P1, T1, (1, 0, True),
        "the same expression reordered is the same candidate, whatever value the text gave it",
    ),
    (
        "55 + 36 - 7 - 19 = 60, not 65. 55 + 36 + 7 - 19 = 79. 55 + 36 + 7 - 19 = 79.</think> <answer>x</answer>",
        P1, T1, (2, 1, False),
        "a correct expression miscomputed and left is rejected by the text's value; a candidate written twice "
        "is one, and the last one is not rejected",
    ),
    (
        "3.5 * 2 = 7 and 1,000 - 5 = 995.</think> <answer>6</answer>",
        [5, 2, 7], 1, (0, 0, False),
        "no digit of a decimal or of a thousands number reads as a given number",
    ),
    (
        "100 - 2 = 98. 44 + 54 = 98.</think> <answer>44+54</answer>",
        [44, 19, 35], 98, (0, 0, False),
        "expressions over numbers that were not given are not candidates",
    ),
    (
        "Using the numbers 44, 19, 35 to make 98 with + - * / we need 44 + 19 = 63.</think> <answer>x</answer>",
        [44, 19, 35], 98, (1, 0, False),
        "'+ - * /' in prose is no expression",
    ),
    (
        "44 + 19 + 35 = 98. User: great. Assistant: <think> 44 * 19 - 35 = 801</think> <answer>44+19+35</answer>",
        [44, 19, 35], 98, (1, 0, False),
        "a turn the model made up is neither thinking nor answer: the thinking never closed, so nothing is verified",
    ),
    ("</think> <answer>44 + 19 + 35</answer>", [44, 19, 35], 98, (0, 0, False), "no thinking, nothing counted"),
]  # fmt: skip


@pytest.mark.parametrize(("completion", "nums", "target", "expected", "why"), SEARCH, ids=[s[4][:60] for s in SEARCH])
def test_search_measures(completion, nums, target, expected, why):
    measures = search_measures(completion, nums, target, prompt=PREFILLED)
    assert (measures["candidates"], measures["rejections"], measures["verified"]) == expected


def test_search_measures_of_an_unusable_row_and_of_no_thinking():
    assert search_measures(answered("1+2"), None, 3) is None
    nothing = {"candidates": 0, "rejections": 0, "verified": False, "checks": []}
    assert search_measures("1 + 2 = 3", [1, 2], 3) == nothing


CHECKS = [
    # (thinking then answer, nums, target, checks: [shown right, right, retried] per candidate, why)
    (
        "13+20=33, 33*1=33, 33!=34 no; 13+1=14, 14+20=34, 34=34 yes</think> <answer>13+1+20</answer>",
        [13, 1, 20], 34, [[False, False, True], [True, True, False]],
        "a search: the first candidate shown wrong and left, the second shown right and kept",
    ),
    (
        "13+20=33, 33*1=34, 34=34 yes</think> <answer>(13+20)*1</answer>",
        [13, 1, 20], 34, [[True, False, False]],
        "a step miscomputed to the target: shown right but not right, a false accept",
    ),
    (
        "13+1=14, 14+20=35, 35!=34 no; 13+20=33, 33*1=33</think> <answer>(13+20)*1</answer>",
        [13, 1, 20], 34, [[False, True, True], [False, False, False]],
        "a right candidate miscomputed and left: a false reject; the last candidate is followed by nothing",
    ),
    (
        "13+1=14, 14+20=34, 34=34 yes; 13*1=13, 13+20=33</think> <answer>13*1+20</answer>",
        [13, 1, 20], 34, [[True, True, True], [False, False, False]],
        "a candidate shown right and left anyway: a retry after a right one",
    ),
    (
        "13*20=260. 13+1=14, 14+20=34</think> <answer>13+1+20</answer>",
        [13, 1, 20], 34, [[False, False, True], [True, True, False]],
        "a partial candidate (a number unused) is never shown right",
    ),
    (
        "13+1=14, 14+20=34. 1+13=14, 14+20=34</think> <answer>13+1+20</answer>",
        [13, 1, 20], 34, [[True, True, False]],
        "a candidate written twice is one, and not a retry of itself",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("completion", "nums", "target", "expected", "why"), CHECKS, ids=[c[4][:60] for c in CHECKS])
def test_search_measures_read_each_candidates_check(completion, nums, target, expected, why):
    assert search_measures(completion, nums, target, prompt=PREFILLED)["checks"] == expected


@pytest.mark.parametrize(
    "think",
    [
        "1+" * 100_000 + "1",
        "(" * 100_000,
        "1=" * 100_000,
        "12 * 4 = 48, " * 20_000,
        "".join(f"{i % 9 + 1} + {i % 7 + 1} = {i % 9 + i % 7 + 2}. " for i in range(20_000)),
        "9" * 200_000,
    ],
    ids=["sum chain", "open parentheses", "equals chain", "one step repeated", "many steps", "digits"],
)
def test_search_measures_stay_linear(think):
    start = time.monotonic()
    search_measures(f"<think>{think}</think> <answer>12*4</answer>", [12, 4, 1, 2, 3, 5, 6, 7, 8, 9], 48)
    assert time.monotonic() - start < 10.0  # a second or two here; a quadratic pass would take minutes


# ------------------------------------------------------------------------------------------------- fuzzing

CANARY = Path("/tmp/reson-countdown-executed")  # the payloads below create this file if anything ever ran them
HOSTILE = [
    "9**9**9**9",
    "44**19**35",
    "9**9**9",
    "(9**9)**9**9",
    "2**" * 5000 + "2",
    "(" * 5000 + "1" + ")" * 5000,
    "(" * 100_000,
    "1" * 100_000,
    "99999999999999999999999999999999999999*9",
    "1/" * 5000 + "1",
    "-" * 100_000 + "1",
    f"__import__('os').system('touch {CANARY}')",
    f"open('{CANARY}', 'w')",
    f"(lambda: __import__('pathlib').Path('{CANARY}').touch())()",
    "[x for x in ().__class__.__bases__[0].__subclasses__()]",
    "\u0663 + \u0664",  # Arabic-Indic digits: int() would read them
    "\uff13 + \uff14",  # full-width digits
    "3\u00b2 + 4",  # a superscript
    "\U0001d7d1 + 2",  # mathematical bold digit
    "1 \u2215 2",  # division slash
    "1\x00+2",
    "\u202e1+2",
    "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
]


@pytest.mark.parametrize("text", HOSTILE, ids=[repr(h[:30]) for h in HOSTILE])
def test_hostile_answers_are_answered_at_once_and_never_run(text):
    for completion in (answered(text), f"<think>{text}</think>\n{text}", text):
        start = time.monotonic()
        result = grade(completion, [9, 9, 9, 9], 27, PREFILLED)
        measures = search_measures(completion, [9, 9, 9, 9], 27, PREFILLED)
        assert time.monotonic() - start < CALL_LIMIT
        assert result.reward == 0.0 and measures is not None
    assert not CANARY.exists()


_ALIAS = {"*": ["*", "\u00d7", "\u00b7", "\u22c5", "\u2217"], "/": ["/", "\u00f7"], "-": ["-", "\u2212", "\u2013"]}


def _random_expression(rng: random.Random, depth: int) -> str:
    """A random expression in the grammar: small numbers, the operators and their aliases, parentheses, spaces."""
    if depth == 0 or rng.random() < 0.3:
        text = str(rng.choice([0, 1, 2, 3, 5, 7, 10, 12, 99, 100, 999]))
    else:
        op = rng.choice("+-*/")
        symbol = rng.choice(_ALIAS.get(op, [op]))
        text = f"{_random_expression(rng, depth - 1)}{rng.choice(['', ' ', '  ', chr(9)])}{symbol} " + (
            _random_expression(rng, depth - 1)
        )
    return f"({text})" if rng.random() < 0.3 else text


def _mangle(rng: random.Random, text: str) -> str:
    """The text with one piece inserted somewhere: often outside the grammar, sometimes still in it."""
    i = rng.randrange(len(text) + 1)
    return (
        text[:i] + rng.choice(["", "-", "+", "(", ")", "*", "/", "**", "//", ".", "x", "2", "%", "=", "^"]) + text[i:]
    )


_ALLOWED_NODES = (ast.Expression, ast.BinOp, ast.Constant, ast.Add, ast.Sub, ast.Mult, ast.Div)


def _reference(text: str) -> Fraction | None | str:
    """An independent reading of ``text``: CPython's own parser (``ast.parse`` builds a tree and runs nothing),
    then a recursive fold of the tree with Fraction. None when the text is outside the grammar (anything beyond
    integer literals and binary + - * /, or a value past the bit bound), "zero" on a division by zero."""
    for alias, symbol in (("\u00d7", "*"), ("\u00b7", "*"), ("\u22c5", "*"), ("\u2217", "*"), ("\u00f7", "/")):
        text = text.replace(alias, symbol)
    text = text.replace("\u2212", "-").replace("\u2013", "-").strip()
    if re.search(r"(?<![0-9])0[0-9]", text):
        return None  # Python reads "00" as 0; the grammar refuses a leading zero
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return None
    if not all(isinstance(n, _ALLOWED_NODES) for n in ast.walk(tree)):
        return None
    if not all(type(n.value) is int for n in ast.walk(tree) if isinstance(n, ast.Constant)):
        return None

    def fold(node) -> Fraction:
        if isinstance(node, ast.Constant):
            return Fraction(node.value)
        left, right = fold(node.left), fold(node.right)
        if isinstance(node.op, ast.Div) and right == 0:
            raise ZeroDivisionError
        value = {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right}.get(type(node.op))
        value = left / right if value is None else value
        if max(value.numerator.bit_length(), value.denominator.bit_length()) > countdown.MAX_VALUE_BITS:
            raise OverflowError
        return value

    try:
        return fold(tree.body)
    except ZeroDivisionError:
        return "zero"
    except OverflowError:
        return None


def test_ten_thousand_random_expressions_against_an_independent_evaluator():
    rng = random.Random(20_250_601)
    slowest, checked = 0.0, {"value": 0, "zero": 0, "rejected": 0}
    for i in range(10_000):
        text = _random_expression(rng, rng.randint(0, 6))
        if i % 3 == 0:
            text = _mangle(rng, text)
        start = time.monotonic()
        try:
            ours: Fraction | None | str = evaluate(text)
        except ExpressionError as error:
            ours = "zero" if error.reason == "division by zero" else None
        slowest = max(slowest, time.monotonic() - start)
        assert ours == _reference(text), text
        checked["value" if isinstance(ours, Fraction) else "zero" if ours == "zero" else "rejected"] += 1
    assert slowest < CALL_LIMIT
    assert min(checked.values()) > 300  # each outcome well represented


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    answer=st.one_of(
        st.text(max_size=200),
        st.text(alphabet="0123456789+-*/()= .\u00d7\u00f7\u2212", max_size=80),
    ),
    nums=st.lists(st.integers(min_value=0, max_value=120), min_size=1, max_size=5),
    target=st.integers(min_value=-50, max_value=200),
    prompt=st.sampled_from(["", PREFILLED]),
)
def test_the_reward_never_raises_and_stays_in_range(answer, nums, target, prompt):
    for completion in (answered(answer), answer, f"<think>{answer}</think> {answer}"):
        start = time.monotonic()
        [value] = Countdown()([completion], nums=[nums], target=[target], prompts=[prompt])
        assert value in (0.0, 1.0)
        measures = search_measures(completion, nums, target, prompt)
        assert set(measures) == {"candidates", "rejections", "verified", "checks"}
        assert 0 <= measures["rejections"] <= max(0, measures["candidates"] - 1)
        assert len(measures["checks"]) == measures["candidates"]
        assert time.monotonic() - start < CALL_LIMIT


def test_docstring_examples_run():
    import doctest

    result = doctest.testmod(countdown)
    assert result.attempted >= 3 and result.failed == 0
