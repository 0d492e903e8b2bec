"""Synthetic arithmetic word problems with verifiable integer answers: the miniature's dataset.

Rows have GSM8K's form, so the same loaders, rewards and evaluation run on them unchanged::

    {"question": "Mia has 12 shells. She gives away 7. Then she finds 19 more. How many shells does Mia have now?",
     "answer": "Mia has 12 - 7 = <<12-7=5>>5 shells.\\nMia has 5 + 19 = <<5+19=24>>24 shells.\\n#### 24",
     "level": 2, "expression": "12 - 7 + 19"}

`level` is the number of operations (1 to 3). Operands are 1-20 and the operations + and -, with every
running total kept at zero or above (one cannot give away more than one has): small numbers are what lets
the miniature's 279k-parameter model learn the arithmetic in minutes.

Train and test never overlap: each problem's canonical form (its expression, whatever the wording) is hashed
and the hash decides the split, so no test problem appears in training under any wording.
"""

from __future__ import annotations

import hashlib
import random

SPLITS = ("train", "test")
LEVELS = (1, 2, 3)
MIN_OPERAND, MAX_OPERAND = 1, 20
TEST_SHARE_PERCENT = 20  # share of canonical problems (expressions) that belong to the test split

NAMES = [
    ("Tom", "he", "his"),
    ("Mia", "she", "her"),
    ("Sam", "he", "his"),
    ("Ann", "she", "her"),
    ("Ben", "he", "his"),
    ("Lily", "she", "her"),
    ("Max", "he", "his"),
    ("Zoe", "she", "her"),
    ("Leo", "he", "his"),
    ("Eva", "she", "her"),
]
ITEMS = ["apples", "marbles", "stickers", "coins", "books", "pencils", "cards", "shells", "stamps", "cookies"]
# phrases for one operation; {p} is the pronoun, {n} the operand
ADD_PHRASES = ["{p} buys {n} more", "{p} finds {n} more", "{p} gets {n} more", "{p} picks up {n} more"]
SUB_PHRASES = ["{p} gives away {n}", "{p} loses {n}", "{p} sells {n}", "{p} uses {n}"]
CONNECTIVES = ["Then", "Later", "Next", "After that"]


def _canonical(operands: list[int], ops: list[str]) -> str:
    """The expression a problem computes, e.g. "12 - 7 + 19": the identity used to split train from test."""
    parts = [str(operands[0])]
    for op, n in zip(ops, operands[1:], strict=True):
        parts += [op, str(n)]
    return " ".join(parts)


def split_of(expression: str) -> str:
    """The split a canonical problem belongs to, from a stable hash of its expression."""
    digest = hashlib.sha256(expression.encode()).digest()
    return "test" if int.from_bytes(digest[:4], "big") % 100 < TEST_SHARE_PERCENT else "train"


def _sample_arithmetic(rng: random.Random, level: int) -> tuple[list[int], list[str], list[int]]:
    """Operands, operations and running totals for `level` operations, every total >= 0."""
    start = rng.randint(MIN_OPERAND, MAX_OPERAND)
    operands, ops, totals = [start], [], [start]
    for _ in range(level):
        total = totals[-1]
        # subtraction is possible only when something is left to take away
        op = rng.choice("+-") if total >= MIN_OPERAND else "+"
        n = rng.randint(MIN_OPERAND, MAX_OPERAND if op == "+" else min(MAX_OPERAND, total))
        operands.append(n)
        ops.append(op)
        totals.append(total + n if op == "+" else total - n)
    return operands, ops, totals


def _render(rng: random.Random, operands: list[int], ops: list[str], totals: list[int]) -> tuple[str, str]:
    """Question text and GSM8K-style worked solution for one sampled problem."""
    name, pronoun, _ = rng.choice(NAMES)
    items = rng.choice(ITEMS)
    sentences = [f"{name} has {operands[0]} {items}."]
    lines = []
    for i, (op, n) in enumerate(zip(ops, operands[1:], strict=True)):
        phrase = rng.choice(ADD_PHRASES if op == "+" else SUB_PHRASES).format(p=pronoun, n=n)
        if i == 0:
            sentences.append(phrase[0].upper() + phrase[1:] + ".")
        else:
            sentences.append(f"{rng.choice(CONNECTIVES)} {phrase}.")
        before, after = totals[i], totals[i + 1]
        lines.append(f"{name} has {before} {op} {n} = <<{before}{op}{n}={after}>>{after} {items}.")
    sentences.append(f"How many {items} does {name} have now?")
    lines.append(f"#### {totals[-1]}")
    return " ".join(sentences), "\n".join(lines)


def steps(expression: str) -> list[tuple[int, str, int, int]]:
    """Left-to-right steps of a canonical expression: (before, op, operand, after) for each operation.

    >>> steps("12 - 7 + 19")
    [(12, '-', 7, 5), (5, '+', 19, 24)]
    """
    tokens = expression.split()
    total, out = int(tokens[0]), []
    for op, n in zip(tokens[1::2], map(int, tokens[2::2]), strict=True):
        after = total + n if op == "+" else total - n
        out.append((total, op, n, after))
        total = after
    return out


def problems(split: str, n: int, seed: int = 0, levels: tuple[int, ...] = LEVELS) -> list[dict]:
    """`n` problems of `split` ("train" or "test"), levels drawn uniformly from `levels`; same seed, same rows.

    Test rows are unique questions within one call; train rows may repeat (the pretraining corpus draws tens
    of thousands of rows from a few hundred thousand distinct problems).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose 'train' or 'test'.")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}.")
    bad = [level for level in levels if level not in LEVELS]
    if not levels or bad:
        raise ValueError(f"levels must be a non-empty subset of {LEVELS}, got {tuple(levels)}.")
    rng = random.Random(f"reson-synthetic/{split}/{seed}")  # str seeds hash with sha512: stable across runs
    rows: list[dict] = []
    seen: set[str] = set()
    repeats = 0  # test questions drawn again in a row: many means the split is nearly exhausted
    while len(rows) < n:
        if repeats > 2_000:
            raise ValueError(f"cannot draw {n} distinct {split} problems at levels {tuple(levels)}: ask for fewer.")
        level = rng.choice(levels)
        # draw within the level until the problem falls in this split, so levels stay evenly mixed
        while True:
            operands, ops, totals = _sample_arithmetic(rng, level)
            expression = _canonical(operands, ops)
            if split_of(expression) == split:
                break
        question, answer = _render(rng, operands, ops, totals)
        if split == "test":
            if question in seen:
                repeats += 1
                continue
            seen.add(question)
            repeats = 0
        rows.append({"question": question, "answer": answer, "level": level, "expression": expression})
    return rows
