"""The miniature's pretraining corpus: synthetic arithmetic shaped like a real base model's pretraining data.

At toy scale, a base model's corpus (`pretraining_texts`, deterministic in the build's seed):

- most texts are problems under the R1-Zero template with a *direct* answer (" 24"), as a base model has
  seen questions followed by bare answers;
- a small share (`tag_share`, 15%) of those carry a reasoning trace in the R1 tags, so the tags have a
  small, nonzero prior under the training template (measured 5-10%; with 10% one build's fell to 2.8% and GRPO
  switched format too late), as Qwen2.5 base has for `<think>`;
- a larger share (`reasoning_share`) are worked solutions under a *different* template
  ("Q: ... A: <think>12-7=5, 5+19=24</think> <answer>24</answer>"), as web text holds worked examples.
  This gives a latent skill that RL can select; without it, GRPO games the format reward and accuracy falls;
- a few texts (`drill_share`, 10%) are arithmetic drills, "17+18=35, 35-9=26, ...", covering the sums and
  differences the traces need, as web text holds arithmetic (digits are single tokens: each fact is learnt
  digit by digit, and wrong steps such as "10-5=11" were what held the probe down).

Slips, repairs and checks (`slip_rate`, `repair_rate`, `check_rate`, ...; off by default) write worked solutions
that err and repair themselves ("12-7=6, wait, 12-7=5"), the verify-and-repair habit web text has. They are the
self-correction experiments of docs/benchmarks.md ("Self-correction in the miniature"): none gave a habit that
GRPO strengthens, so the shipped corpus is clean.

Every R1-template text is exactly `format_prompt(question, "r1_zero") + completion`, and each completion starts
with a space, so the tokens seen in pretraining are the tokens the trainer generates after "Assistant:".
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from reson.core.data import format_prompt
from reson.core.synthetic import MAX_OPERAND, MIN_OPERAND, problems, steps

if TYPE_CHECKING:
    from reson.miniature.pretrain import BaseModelConfig

QA_TEMPLATE = "Q: {question}\nA:"  # the "other" template worked solutions are written under


def reasoning_trace(expression: str) -> str:
    """The compact worked solution for a canonical expression: "12-7=5, 5+19=24"."""
    return ", ".join(f"{before}{op}{n}={after}" for before, op, n, after in steps(expression))


def worked_solution(expression: str, rng: random.Random, config: BaseModelConfig) -> tuple[str, int]:
    """A worked solution that may slip and check itself, as people write them: (trace, the total it arrives at).

    Per step, in this order:
    - with probability `check_rate` the step is checked. A checked step had slipped with probability
      `check_fail_share`; then the check fails and the step is redone ("12-7=6, check 6+7=13, wait, 12-7=5"),
      else it passes ("12-7=5, check 5+7=12"). With half the checks failing, copying the step into the check does
      not pay: the check has to be computed. `check_style` "recompute" works the step again instead ("12-7=5,
      recheck 12-7=5"; failed: "12-7=6, recheck 12-7=5, wait, 12-7=5"), so the last number is the running total.
    - otherwise, with probability `slip_rate` the result is first written wrong; the slip is caught at once with
      probability `repair_rate` ("12-7=6, wait, 12-7=5"), else the wrong total is carried on to a wrong answer.
    Wrong results are off by 1, 2 or 10, and only ones that keep every later total >= 0. With all rates 0 it is
    `reasoning_trace(expression)` and no random numbers are drawn.
    """
    operations = [(op, n) for _, op, n, _ in steps(expression)]

    def stays_nonnegative(total: int, rest) -> bool:
        for op, n in rest:
            total = total + n if op == "+" else total - n
            if total < 0:
                return False
        return True

    def inverse(result: int, op: str, n: int) -> str:  # the check of "a op n = result": undo the operation
        return f"{result}-{n}={result - n}" if op == "+" else f"{result}+{n}={result + n}"

    total = int(expression.split()[0])
    parts = []
    for i, (op, n) in enumerate(operations):
        right = total + n if op == "+" else total - n
        step = f"{total}{op}{n}="
        wrong = [
            w
            for w in (right + d for d in (-10, -2, -1, 1, 2, 10))
            if w >= 0 and stays_nonnegative(w, operations[i + 1 :]) and (op == "-" or w >= n)
        ]
        if config.check_rate and rng.random() < config.check_rate:
            recompute = config.check_style == "recompute"
            failed = bool(wrong) and rng.random() < config.check_fail_share
            written = rng.choice(wrong) if failed else right
            check = f"recheck {step}{right}" if recompute else f"check {inverse(written, op, n)}"
            parts.append(f"{step}{written}, {check}" + (f", wait, {step}{right}" if failed else ""))
            total = right
        elif config.slip_rate and wrong and rng.random() < config.slip_rate:
            written = rng.choice(wrong)
            if rng.random() < config.repair_rate:
                parts.append(f"{step}{written}, wait, {step}{right}")
                total = right
            else:
                parts.append(f"{step}{written}")
                total = written
        else:
            parts.append(f"{step}{right}")
            total = right
    return ", ".join(parts), total


def final_answer(row: dict) -> str:
    """The gold final answer of a row: the text after `####` in GSM8K form, else the `answer` field itself."""
    answer = str(row["answer"])
    return answer.split("####")[-1].strip().replace(",", "") if "####" in answer else answer.strip()


def tagged_completion(row: dict) -> str:
    """A completion with the reasoning inside the R1 tags (leading space: it follows "Assistant:" or "A:")."""
    return f" <think>{reasoning_trace(row['expression'])}</think> <answer>{final_answer(row)}</answer>"


DRILL_FACTS = 16  # facts per drill text
DRILL_MAX_TOTAL = 80  # the largest running total a test problem can reach (20 + 3 x 20)


def arithmetic_drill(rng: random.Random, n: int = DRILL_FACTS) -> str:
    """A line of `n` sums and differences, "17+18=35, 35-9=26, ...", as web text holds arithmetic.

    The facts cover what the reasoning traces need: a running total (0 to 80) plus or minus an operand 1-20,
    never below zero; small totals, where most traces live, are drawn more often.
    """
    facts = []
    for _ in range(n):
        total = min(rng.randint(0, DRILL_MAX_TOTAL), rng.randint(0, DRILL_MAX_TOTAL))  # skewed towards small
        op = rng.choice("+-") if total >= MIN_OPERAND else "+"
        if op == "+":
            total = min(total, DRILL_MAX_TOTAL - MAX_OPERAND)
        k = rng.randint(MIN_OPERAND, MAX_OPERAND if op == "+" else min(MAX_OPERAND, total))
        facts.append(f"{total}{op}{k}={total + k if op == '+' else total - k}")
    return ", ".join(facts)


def worked_completion(row: dict, rng: random.Random, config: BaseModelConfig) -> str:
    """`tagged_completion(row)`, or a `worked_solution` with slips and checks when the config asks for them."""
    if not (config.slip_rate or config.check_rate):
        return tagged_completion(row)
    trace, total = worked_solution(row["expression"], rng, config)
    return f" <think>{trace}</think> <answer>{total}</answer>"


def pretraining_texts(config: BaseModelConfig) -> list[str]:
    """The pretraining corpus for `config`, deterministic in `config.seed` (eos is appended at tokenisation)."""
    rng = random.Random(f"reson-pretrain/{config.seed}")
    num_drills = round(config.num_texts * config.drill_share)
    rows = problems("train", config.num_texts - num_drills, seed=config.seed)
    drill_at = set(rng.sample(range(config.num_texts), num_drills))
    rows_iter = iter(rows)
    texts = []
    for i in range(config.num_texts):
        if i in drill_at:
            texts.append(arithmetic_drill(rng))
            continue
        row = next(rows_iter)
        if rng.random() < config.reasoning_share:
            texts.append(QA_TEMPLATE.format(question=row["question"]) + worked_completion(row, rng, config))
        elif rng.random() < config.tag_share:
            texts.append(format_prompt(row["question"], "r1_zero") + worked_completion(row, rng, config))
        else:
            texts.append(format_prompt(row["question"], "r1_zero") + " " + final_answer(row))
    return texts
