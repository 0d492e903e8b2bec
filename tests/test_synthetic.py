"""The synthetic problem generator: deterministic, split without overlap, and every answer right.

Answers are checked independently of the generator: the question's own words are read back into an expression,
which a small evaluator written here over `ast` (numbers and + - * / only, never `eval`) computes.
"""

from __future__ import annotations

import ast
import operator
import re
from fractions import Fraction

import pytest

from reson.core.synthetic import LEVELS, problems

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def arithmetic(expression: str) -> Fraction:
    """Evaluate an expression of numbers and + - * / exactly; anything else is an error."""

    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError(f"not plain arithmetic: {ast.dump(node)}")

    return walk(ast.parse(expression, mode="eval"))


# verbs a question uses for adding and taking away (the test's own reading of the text)
ADD_VERBS = {"buys", "finds", "gets", "picks"}
SUB_VERBS = {"gives", "loses", "sells", "uses"}


def expression_from_question(question: str) -> str:
    """Read the arithmetic back out of the question's sentences: "X has 12 ...", "She sells 7.", ..."""
    sentences = [s for s in re.split(r"(?<=[.?])\s+", question) if s]
    assert sentences[-1].startswith("How many"), question
    start = re.fullmatch(r"\w+ has (\d+) \w+\.", sentences[0])
    assert start, question
    parts = [start.group(1)]
    for sentence in sentences[1:-1]:
        words = sentence.rstrip(".").split()
        verbs = [w for w in words if w in ADD_VERBS | SUB_VERBS]
        numbers = [w for w in words if w.isdigit()]
        assert len(verbs) == 1 and len(numbers) == 1, sentence
        parts += ["+" if verbs[0] in ADD_VERBS else "-", numbers[0]]
    return " ".join(parts)


def gold(row: dict) -> int:
    return int(row["answer"].split("####")[1].strip())


# --- the evaluator itself: it must refuse anything but arithmetic, or it proves nothing ---------------------------


@pytest.mark.parametrize(
    "expression, value",
    [
        ("12 - 7 + 19", 24),  # left to right
        ("2 + 3 * 4", 14),  # precedence comes from ast
        ("7 / 2", Fraction(7, 2)),  # exact division
    ],
)
def test_evaluator_computes(expression, value):
    assert arithmetic(expression) == value


@pytest.mark.parametrize("expression", ["__import__('os')", "2 ** 3", "x + 1", "abs(-3)", "-3"])
def test_evaluator_refuses_non_arithmetic(expression):
    with pytest.raises(ValueError):
        arithmetic(expression)


# --- the generator ---------------------------------------------------------------------------------------------


def test_same_seed_same_rows_other_seed_other_rows():
    assert problems("train", 50, seed=3) == problems("train", 50, seed=3)
    assert problems("test", 50, seed=3) == problems("test", 50, seed=3)
    assert problems("train", 50, seed=3) != problems("train", 50, seed=4)
    # a longer draw extends a shorter one with the same seed
    assert problems("train", 80, seed=3)[:50] == problems("train", 50, seed=3)


def test_train_and_test_never_overlap():
    train = problems("train", 20_000, seed=0) + problems("train", 5_000, seed=1)
    test = problems("test", 2_000, seed=0) + problems("test", 500, seed=7)
    # canonical problems (the arithmetic, whatever the wording) are disjoint, so questions are too
    assert not {expression_from_question(r["question"]) for r in train} & {
        expression_from_question(r["question"]) for r in test
    }
    assert not {r["question"] for r in train} & {r["question"] for r in test}


def test_every_answer_is_right_by_independent_evaluation():
    rows = problems("train", 1_500, seed=11) + problems("test", 500, seed=11)
    for row in rows:
        expression = expression_from_question(row["question"])
        assert expression == row["expression"], row
        assert arithmetic(expression) == gold(row), row


def test_worked_solutions_check_step_by_step():
    for row in problems("test", 300, seed=5):
        lines = row["answer"].split("\n")
        assert lines[-1] == f"#### {gold(row)}"
        results = []
        for line in lines[:-1]:
            m = re.search(r"(\d+) ([+-]) (\d+) = <<(\d+)([+-])(\d+)=(\d+)>>(\d+)", line)
            assert m, line
            a, op, b, a2, op2, b2, c, c2 = m.groups()
            assert (a, op, b, c) == (a2, op2, b2, c2), line  # the calculator annotation matches the prose
            assert arithmetic(f"{a} {op} {b}") == int(c), line
            if results:
                assert int(a) == results[-1], row  # each step starts from the previous result
            results.append(int(c))
        assert results[-1] == gold(row)
        assert len(results) == row["level"]


def test_levels_operands_and_schema():
    rows = problems("train", 3_000, seed=2)
    assert {r["level"] for r in rows} == set(LEVELS)
    for row in rows:
        assert set(row) == {"question", "answer", "level", "expression"}
        numbers = [int(t) for t in row["expression"].split()[::2]]
        assert all(1 <= x <= 20 for x in numbers), row  # small numbers: operands 1-20
        assert len(numbers) == row["level"] + 1
        assert gold(row) >= 0
    # levels are mixed evenly in both splits (within sampling noise)
    for split_rows in (rows, problems("test", 600, seed=2)):
        counts = [sum(r["level"] == level for r in split_rows) for level in LEVELS]
        assert min(counts) > len(split_rows) / len(LEVELS) * 0.8, counts


def test_levels_can_be_restricted_and_test_questions_are_unique():
    rows = problems("test", 400, seed=0, levels=(2,))
    assert {r["level"] for r in rows} == {2}
    assert len({r["question"] for r in rows}) == len(rows)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split": "validation", "n": 5}, "unknown split"),  # only train and test exist
        ({"split": "train", "n": -1}, "n must be"),  # a negative count is a caller's mistake
        ({"split": "train", "n": 5, "levels": (4,)}, "levels must be"),  # no level-4 problems
        ({"split": "train", "n": 5, "levels": ()}, "levels must be"),  # nothing to draw from
    ],
)
def test_bad_input_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        problems(**kwargs)


def test_cannot_ask_for_more_distinct_test_problems_than_exist(monkeypatch):
    # with one name, one item and one phrase per operation, level 1 has only a few hundred distinct test
    # questions: asking for more fails with a clear error instead of looping forever
    import reson.core.synthetic as synthetic

    monkeypatch.setattr(synthetic, "NAMES", synthetic.NAMES[:1])
    monkeypatch.setattr(synthetic, "ITEMS", synthetic.ITEMS[:1])
    monkeypatch.setattr(synthetic, "ADD_PHRASES", synthetic.ADD_PHRASES[:1])
    monkeypatch.setattr(synthetic, "SUB_PHRASES", synthetic.SUB_PHRASES[:1])
    assert len(problems("test", 50, seed=0, levels=(1,))) == 50
    with pytest.raises(ValueError, match="distinct"):
        problems("test", 2_000, seed=0, levels=(1,))
