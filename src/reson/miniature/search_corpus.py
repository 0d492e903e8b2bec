"""The miniature's second corpus: small Countdown, where a candidate is easy to check and hard to find.

The task (dataset ``tiny_countdown``, `reson.core.countdown.TINY`): three numbers in 1-20 and a target in 1-100;
write an expression with + - * that uses each number once and equals the target. The reward is the project's
Countdown reward. A candidate is checked by comparing its value with the target, a number already in the prompt, so a
279k-parameter model can run the check; finding one takes search: 9-14 candidates per problem, 1-2 of them right.

The searcher (`candidates`): every candidate ``(x o y) o z`` with each value it computes in 1-100, one per expression
up to reordering and regrouping (as `reson.core.countdown.search_measures` counts them), ordered by a heuristic a
person might use: the first step whose result is nearest the target, then the last step that lands nearest it. The
heuristic's first candidate is right on ~40% of problems, its first four on ~70% (docs/benchmarks.md).

Texts, deterministic in `BaseModelConfig.seed` (`pretraining_texts`):

- **search traces**, in the style of Stream of Search (an explicit check at every leaf, the search moving on after a
  failed one): ``<think>13*7=91, 91+4=95, 95!=96 no; 7*4=28, ...; 20*5=100, 100-4=96, 96=96 yes</think>
  <answer>20*5-4</answer>``. Up to `max_candidates` candidates; a search that finds nothing answers its last one.
  Most are under the "Q:/A:" template (`reasoning_share`), as web text holds worked searches;
- **guesses** under the R1-Zero template: mostly a bare expression (`" 13*7+4"`, the heuristic's first candidate,
  right or wrong), and with `tag_share` inside the R1 tags: the same guess worked out without a check (``<think>
  13*7=91, 91+4=95</think> <answer>13*7+4</answer>``), or, with `search_share` of those, a search trace. So under
  the training template the base model mostly guesses and rarely thinks, and when it thinks it mostly does not
  check; the search habit it has under the other template is there at a low rate under the R1 tags too (a habit
  learnt only under another template never transferred: DESIGN.md);
- **drills** (`drill_share`): lines of the facts the traces use ("13*7=91, 91+4=95, 20-12=8, ...").

Every check is correct, every step's arithmetic is right; the errors are wrong candidates, which the search rejects
and moves on from. Every trace parses under `search_measures` to exactly the candidates it writes (tests check it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reson.core import countdown
from reson.core.data import TINY_COUNTDOWN_QUESTION, format_prompt
from reson.miniature.corpus import QA_TEMPLATE

if TYPE_CHECKING:
    from reson.miniature.pretrain import BaseModelConfig

MAX_VALUE = countdown.TINY["max_value"]  # every value a candidate computes lies in 1 to this
LOW, HIGH = countdown.TINY["numbers"]
OPERATORS = countdown.TINY["operators"]
PAIRS = ((0, 1), (0, 2), (1, 2))  # the first step's two numbers, by their places in the prompt
DRILL_FACTS = 16  # facts per drill line


@dataclass(frozen=True)
class Candidate:
    """``(x o y) o z``: the first step ``x o y = r``, then ``r o z`` (or ``z - r`` when ``swapped``) ``= value``."""

    x: int
    op: str
    y: int
    r: int
    last_op: str
    z: int
    swapped: bool
    value: int

    def steps(self) -> str:
        """The two steps as the trace writes them: "13*7=91, 91+4=95"."""
        last = f"{self.z}-{self.r}" if self.swapped else f"{self.r}{self.last_op}{self.z}"
        return f"{self.x}{self.op}{self.y}={self.r}, {last}={self.value}"

    def expression(self) -> str:
        """The candidate as one expression, with the parentheses it needs: "13*7+4", "(9-4)*3", "20-(3+4)"."""
        first = f"{self.x}{self.op}{self.y}"
        if self.swapped:
            return f"{self.z}-{first}" if self.op == "*" else f"{self.z}-({first})"
        if self.last_op == "*" and self.op != "*":
            return f"({first})*{self.z}"
        return f"{first}{self.last_op}{self.z}"


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _completions(nums: list[int], i: int, j: int, op: str) -> list[Candidate]:
    """The candidates that start with ``x op y`` (the numbers at places i and j; ``-`` takes the larger first), each
    value in 1-`MAX_VALUE`: the last step ``r + z``, ``r - z``, ``z - r``, ``r * z``, in that order."""
    x, y, z = nums[i], nums[j], nums[3 - i - j]
    a, b = (max(x, y), min(x, y)) if op == "-" else (x, y)
    r = _apply(a, op, b)
    if not 1 <= r <= MAX_VALUE:
        return []
    found = []
    for last_op, swapped in (("+", False), ("-", False), ("-", True), ("*", False)):
        value = z - r if swapped else _apply(r, last_op, z)
        if 1 <= value <= MAX_VALUE:
            found.append(Candidate(a, op, b, r, last_op, z, swapped, value))
    return found


def candidates(nums: list[int], target: int, rng: random.Random | None = None) -> list[Candidate]:
    """Every candidate ``(x o y) o z`` over the three numbers, each value it computes in 1-`MAX_VALUE`, one per
    expression up to reordering and regrouping, in a guesser's order: first step nearest the target, then last step
    nearest it; ties broken by `rng` (in prompt order without one). The first is the guess."""
    seen, found = set(), []
    for i, j in PAIRS:
        for op in OPERATORS:
            for candidate in _completions(nums, i, j, op):
                key = countdown.expression_key(candidate.expression())
                if key not in seen:
                    seen.add(key)
                    found.append(candidate)
    ties = [rng.random() if rng else k for k in range(len(found))]
    order = sorted(range(len(found)), key=lambda k: (abs(found[k].r - target), abs(found[k].value - target), ties[k]))
    return [found[k] for k in order]


def systematic(nums: list[int], target: int) -> list[Candidate]:
    """The search's order: one candidate per first step, the first steps in a fixed order (the pairs of numbers in
    the prompt's order, each with + - *), each completed by the last step that lands nearest the target (the first
    of equals). Each next candidate follows from the last one, so the search needs no memory of what it tried; and
    it is complete: a first step from which the target can be reached is completed by the step that reaches it. An
    expression may come twice by two first steps ("19+6=25, 25+8=33" and "19+8=27, 27+6=33"); `search_measures`
    counts it once."""
    order = []
    for i, j in PAIRS:
        for op in OPERATORS:
            found = _completions(nums, i, j, op)
            if found:
                order.append(min(found, key=lambda c: abs(c.value - target)))
    return order


def completion(thinking: str | None, answer: str) -> str:
    """A completion as the trainer generates one after "Assistant:" (leading space): a think block and a tagged
    answer, or the bare answer when there is no thinking."""
    return f" <think>{thinking}</think> <answer>{answer}</answer>" if thinking is not None else f" {answer}"


def arithmetic_drill(rng: random.Random, n: int = DRILL_FACTS) -> str:
    """A line of `n` facts of the kinds the traces use: a quarter products of two numbers in 1-20 up to 100, the rest
    sums and differences of a number up to 100 and one in 1-20 that stay in 1-100 (the facts a 279k-parameter
    model learns last: a search's checks are only as good as its sums)."""
    facts = []
    while len(facts) < n:
        kind = rng.random()
        if kind < 0.25:
            a, b = rng.randint(LOW, HIGH), rng.randint(LOW, HIGH)
            if a * b <= MAX_VALUE:
                facts.append(f"{a}*{b}={a * b}")
            continue
        a, b = rng.randint(1, MAX_VALUE), rng.randint(LOW, HIGH)
        if kind < 0.6 and a + b <= MAX_VALUE:
            facts.append(f"{a}+{b}={a + b}")
        elif kind >= 0.6 and a != b:
            big, small = max(a, b), min(a, b)
            facts.append(f"{big}-{small}={big - small}")
    return ", ".join(facts)


def pretraining_texts(config: BaseModelConfig) -> list[str]:
    """The Countdown corpus for `config` (module docstring), deterministic in `config.seed`; eos is appended at
    tokenisation. Problems are the train split of ``tiny_countdown``, drawn with repeats."""
    rng = random.Random(f"reson-pretrain-countdown/{config.seed}")
    pool = countdown.problems("train", 10_000, seed=config.seed, **countdown.TINY)
    texts = []
    for _ in range(config.num_texts):
        if rng.random() < config.drill_share:
            texts.append(arithmetic_drill(rng))
            continue
        row = pool[rng.randrange(len(pool))]
        nums, target = row["nums"], row["target"]
        question = TINY_COUNTDOWN_QUESTION.format(nums=nums, target=target)
        ordered = systematic(nums, target)
        guess = candidates(nums, target, rng)[0]
        if rng.random() < config.reasoning_share:
            thinking, answer = search(target, ordered, config.max_candidates)
            texts.append(QA_TEMPLATE.format(question=question) + completion(thinking, answer))
            continue
        prompt = format_prompt(question, "r1_zero")
        if rng.random() >= config.tag_share:
            texts.append(prompt + completion(None, guess.expression()))
        elif rng.random() < config.search_share:
            texts.append(prompt + completion(*search(target, ordered, config.max_candidates)))
        else:
            texts.append(prompt + completion(guess.steps(), guess.expression()))
    return texts


def search(target: int, ordered: list[Candidate], max_candidates: int) -> tuple[str, str]:
    """(thinking, answer) of a search over `ordered`: every candidate checked against the target until one is
    right or `max_candidates` were tried; the answer is the candidate it stopped at."""
    parts = []
    tried = ordered[:max_candidates]
    for candidate in tried:
        if candidate.value == target:
            parts.append(f"{candidate.steps()}, {target} vs {target} yes")
            return "; ".join(parts), candidate.expression()
        parts.append(f"{candidate.steps()}, {candidate.value} vs {target} no")
    return "; ".join(parts), tried[-1].expression()
