"""Pretrain the miniature's tiny base model on synthetic arithmetic, and probe its latent reasoning skill.

    python -m reson.miniature.pretrain --output_dir runs/base-seed0 --seed 0

builds (or reuses) the base model and prints its size, pretraining time, greedy accuracy under the R1-Zero
template, the probe's accuracy (with `<think>` prefilled) and the prior for the think tag.

The corpus is shaped like a real base model's pretraining data, at toy scale (DESIGN.md, "The miniature"):

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

What makes it learn in ~7 minutes on one thread (docs/benchmarks.md, "Miniature base model"): a small model with
many steps (hidden 64, 4 layers, 279k parameters, batch 8, 9,000 steps) rather than a wide one with few
(hidden 128, 1,250 steps: probe 2.5-9%), and the R1 template's fixed preamble (79 of the ~114 tokens of an R1
text) run once per batch, its keys and values shared by the batch's rows, which is exact and cuts those texts'
compute by ~3x. Somewhere between ~3,700 and ~7,000 steps the arithmetic clicks (the probe goes from ~30% to
~85% within a thousand or two); where exactly moves with the floats' last bits (thread count, CPU kernels), so
the schedule runs well past it.

Reproducibility: the build always runs with `BaseModelConfig.threads` torch threads (1), whatever the caller set,
because the thread count changes how float sums are split and so the weights; with it, a build repeats bit for bit
on one machine under any load. The CPU's kernel family changes the bits too (ATen's AVX-512 or AVX2 kernels, MKL's
code path): `pin_cpu_kernels()` pins both to AVX2, which current x86 processors share.

Slips, repairs and checks (`slip_rate`, `repair_rate`, `check_rate`, ...; off by default) write worked solutions
that err and repair themselves ("12-7=6, wait, 12-7=5"), the verify-and-repair habit web text has. They are the
self-correction experiments of docs/benchmarks.md ("Self-correction in the miniature"): none gave a habit that
GRPO strengthens, so the shipped corpus is clean.

Every R1-template text is exactly `format_prompt(question, "r1_zero") + completion`, and each completion starts
with a space, so the tokens seen in pretraining are the tokens the trainer generates after "Assistant:".

The model is saved in HF format (config, safetensors, tokenizer) and loads with AutoModelForCausalLM /
AutoTokenizer exactly as Qwen2.5 does. A build is cached: `build_base_model` writes into a temporary folder,
writes the build record last, then renames the folder into place, so an interrupted build never looks complete.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import sys
import time
import uuid
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from reson.core.help import HelpFormatter
from reson.core.machine import pin_cpu_kernels

logger = logging.getLogger(__name__)

BUILD_RECORD = "reson_base_model.json"  # written last: its presence with matching settings marks a complete build
QA_TEMPLATE = "Q: {question}\nA:"  # the "other" template worked solutions are written under


@dataclass(frozen=True)
class BaseModelConfig:
    """Everything that determines a base model build; two builds with equal configs are interchangeable."""

    seed: int = 0
    # corpus
    num_texts: int = 72_000  # pretraining texts per pass (9,000 steps of 8)
    drill_share: float = 0.1  # share of texts that are arithmetic drills ("17+18=35, 35-9=26, ...")
    reasoning_share: float = 0.6  # share of the other texts that are worked solutions under the Q:/A: template
    tag_share: float = 0.15  # share of R1-template texts whose completion uses the think/answer tags
    # slips, repairs and checks in worked solutions (Q:/A: and R1-tagged alike): the self-correction experiments
    slip_rate: float = 0.0  # per step: chance the result is first written wrong (off by 1, 2 or 10)
    repair_rate: float = 0.0  # share of slips caught at once, "12-7=6, wait, 12-7=5"; the rest carry the error on
    check_rate: float = 0.0  # per step: chance the step is checked ("12-7=5, check 5+7=12")
    check_fail_share: float = 0.5  # share of checked steps that had slipped: "12-7=6, check 6+7=13, wait, 12-7=5"
    check_style: str = "inverse"  # "inverse" ("check 5+7=12") or "recompute" ("recheck 12-7=5")
    # tokenizer and model
    vocab_size: int = 512
    hidden_size: int = 64
    num_layers: int = 4
    num_heads: int = 4
    # optimisation
    batch_size: int = 8  # twice the updates of batch 16 for the same tokens: the arithmetic clicks well before the end
    epochs: int = 1  # passes over the texts
    learning_rate: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    threads: int = 1  # torch threads for the build: another count gives other weights (see the module docstring)

    def __post_init__(self):
        fractions = (
            "drill_share",
            "reasoning_share",
            "tag_share",
            "slip_rate",
            "repair_rate",
            "check_rate",
            "check_fail_share",
        )
        outside = [f"{name}={getattr(self, name)}" for name in fractions if not 0.0 <= getattr(self, name) <= 1.0]
        if outside:
            raise ValueError(f"{', '.join(outside)}: these are fractions, give values between 0 and 1.")
        if self.num_texts < self.batch_size:
            raise ValueError(f"num_texts ({self.num_texts}) must be at least batch_size ({self.batch_size}).")
        if self.check_style not in ("inverse", "recompute"):
            raise ValueError(f"check_style {self.check_style!r}: choose 'inverse' or 'recompute'.")
        if self.threads < 1:
            raise ValueError(f"threads ({self.threads}) must be at least 1.")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must divide by num_heads ({self.num_heads}).")


# ---------------------------------------------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------------------------------------------


def reasoning_trace(expression: str) -> str:
    """The compact worked solution for a canonical expression: "12-7=5, 5+19=24"."""
    from reson.core.synthetic import steps

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
    from reson.core.synthetic import steps

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
    from reson.core.synthetic import MAX_OPERAND, MIN_OPERAND

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
    from reson.core.data import format_prompt
    from reson.core.synthetic import problems

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


# ---------------------------------------------------------------------------------------------------------------
# Pretraining
# ---------------------------------------------------------------------------------------------------------------


def _batches(token_ids: list[list[int]], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Index batches of similar length (less padding): sort within shuffled windows, then shuffle the batches."""
    order = list(range(len(token_ids)))
    rng.shuffle(order)
    window = batch_size * 32
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: len(token_ids[i]))
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return [b for b in batches if len(b) == batch_size]


def batch_loss(model, rows: list[list[int]], pad_id: int, preamble_ids=None):
    """Mean next-token loss over `rows` (right-padded with `pad_id`) and the number of tokens run.

    With `preamble_ids` ([1, P] tensor) every row continues that preamble: it runs once, with gradients, and its
    keys and values are shared by all rows. Each row then starts with the preamble's last token, whose own
    prediction carries no loss, so the first token after the preamble is predicted here.
    """
    import torch

    width = max(map(len, rows))
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # [batch, seq_len]
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # [batch, seq_len]
    for row, ids in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
    labels = input_ids.masked_fill(attention_mask == 0, -100)  # padding carries no loss; the final eos does
    tokens = int(attention_mask.sum())
    if preamble_ids is None:
        return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss, tokens
    labels[:, 0] = -100  # the preamble's last token: template, not text to learn
    cache = model(input_ids=preamble_ids, use_cache=True).past_key_values  # with gradients
    cache.batch_repeat_interleave(len(rows))
    prefix_mask = torch.ones((len(rows), preamble_ids.shape[1]), dtype=torch.long)  # [batch, P]
    full_mask = torch.cat([prefix_mask, attention_mask], dim=1)  # [batch, P + seq_len]
    loss = model(input_ids=input_ids, attention_mask=full_mask, past_key_values=cache, labels=labels).loss
    return loss, tokens + preamble_ids.shape[1]


def pretrain(model, tokenizer, texts: list[str], config: BaseModelConfig, log_every: int = 50, callback=None) -> dict:
    """Plain causal-LM training over `texts` (each followed by eos); returns loss and timing stats.

    `callback(step, model, tokenizer)`, when given, runs every `log_every` steps and after the last, e.g. to probe
    the model along the way; it must leave the model as it found it (train mode, same weights).

    Texts that start with the R1-Zero template's fixed preamble (86 tokens of ~114) are batched together and the
    preamble is run once per batch, its keys and values shared by every row: the same loss and gradients as
    running each text whole (attention is causal, so the preamble never sees what follows), at about a quarter
    of the compute for those texts. The loss on the preamble itself is left out: it is learnt in a few hundred
    steps and the model never has to write it.
    """
    import torch

    from reson.core.data import format_prompt

    eos = tokenizer.eos_token_id
    token_ids = [ids + [eos] for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    # the preamble: the tokens of the template before the question, checked to be a token prefix of each text
    marker = "User: "
    preamble_text = format_prompt("QUESTION", "r1_zero").split(marker)[0] + marker.rstrip()
    preamble = tokenizer(preamble_text, add_special_tokens=False)["input_ids"]
    with_preamble = {i for i, ids in enumerate(token_ids) if ids[: len(preamble)] == preamble}
    rng = random.Random(f"reson-pretrain-batches/{config.seed}")
    # batches of either kind; the suffix of a preamble text starts with the preamble's last token, so the first
    # token after the preamble is predicted inside the suffix forward pass
    keep = len(preamble) - 1
    suffix_ids = [ids[keep:] if i in with_preamble else ids for i, ids in enumerate(token_ids)]
    shared = sorted(with_preamble)
    alone = [i for i in range(len(token_ids)) if i not in with_preamble]
    batches = [
        (True, [shared[j] for j in b]) for b in _batches([suffix_ids[i] for i in shared], config.batch_size, rng)
    ]
    batches += [
        (False, [alone[j] for j in b]) for b in _batches([token_ids[i] for i in alone], config.batch_size, rng)
    ]
    batches = [b for _ in range(config.epochs) for b in rng.sample(batches, len(batches))]  # a new order each pass
    total_steps = len(batches)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, betas=(0.9, 0.95)
    )

    def lr_factor(step: int) -> float:  # linear warmup, cosine decay to 10%
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    preamble_ids = torch.tensor([preamble[:keep]])  # [1, keep]
    # subnormal floats (Adam's second moments of rarely used embeddings decay into them) make CPU math crawl
    torch.set_flush_denormal(True)
    model.train()
    losses, tokens_seen = [], 0
    start = time.perf_counter()
    for step, (with_shared, batch) in enumerate(batches):
        loss, tokens = batch_loss(model, [suffix_ids[i] for i in batch], eos, preamble_ids if with_shared else None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        tokens_seen += tokens
        if callback is not None and log_every and ((step + 1) % log_every == 0 or step == total_steps - 1):
            callback(step + 1, model, tokenizer)
        if log_every and (step % log_every == 0 or step == total_steps - 1):
            elapsed = time.perf_counter() - start
            logger.info("pretrain step %d/%d loss %.4f (%.0fs)", step + 1, total_steps, losses[-1], elapsed)
    seconds = time.perf_counter() - start
    torch.set_flush_denormal(False)
    model.eval()
    k = max(1, min(20, total_steps // 10))
    return {
        "steps": total_steps,
        "first_loss": sum(losses[:k]) / k,
        "final_loss": sum(losses[-k:]) / k,
        "pretrain_seconds": round(seconds, 1),
        "tokens": tokens_seen,
        "tokens_per_second": round(tokens_seen / max(seconds, 1e-9)),
        "texts_sharing_the_preamble": len(with_preamble),
    }


def _is_complete(path: Path, config: BaseModelConfig) -> bool:
    record = path / BUILD_RECORD
    if not record.is_file():
        return False
    try:
        saved = json.loads(record.read_text())["config"]
    except (ValueError, KeyError):
        return False
    needed = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    return saved == asdict(config) and all((path / name).is_file() for name in needed)


def build_record(path: str | Path) -> dict:
    """The record a completed build wrote (its config and pretraining stats)."""
    return json.loads((Path(path) / BUILD_RECORD).read_text())


def build_base_model(output_dir: str | Path, seed: int = 0, *, callback=None, **settings) -> Path:
    """Build the miniature base model into `output_dir` and return that path; reuse a complete build.

    `settings` override `BaseModelConfig` fields (`num_texts`, `hidden_size`, ...). A folder holding a complete
    build with the same config is returned as is; anything else there (an older config, a build cut short) is
    replaced. The build runs with `threads` torch threads (default 1) whatever the caller set, and restores the
    caller's count after.
    """
    known = {f.name for f in fields(BaseModelConfig)} - {"seed"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"unknown base model setting(s) {unknown}: choose from {sorted(known)}.")
    config = BaseModelConfig(seed=seed, **settings)
    output_dir = Path(output_dir)
    if _is_complete(output_dir, config):
        logger.info("base model already built at %s", output_dir)
        return output_dir

    import torch

    from reson.miniature.tiny_model import TAG_TOKENS, build_model, train_tokenizer

    threads_before = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.parent / f".{output_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        # data
        start = time.perf_counter()
        texts = pretraining_texts(config)
        # tokenizer: the tags are added tokens, so the BPE merges are spent on the rest of the text
        plain = texts[:5000]
        for tag in TAG_TOKENS:
            plain = [t.replace(tag, " ") for t in plain]
        tokenizer = train_tokenizer(plain, vocab_size=config.vocab_size)
        # model
        model = build_model(
            tokenizer,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            num_heads=config.num_heads,
            seed=config.seed,
        )
        # train
        stats = pretrain(model, tokenizer, texts, config, callback=callback)
        stats["parameters"] = sum(p.numel() for p in model.parameters())
        stats["build_seconds"] = round(time.perf_counter() - start, 1)
        stats["torch_threads"] = torch.get_num_threads()
        stats["cpu_kernels"] = torch.backends.cpu.get_cpu_capability()  # the other half of what fixes the bits
        # save: weights and tokenizer first, the build record last, then move into place
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / BUILD_RECORD).write_text(json.dumps({"config": asdict(config), "stats": stats}, indent=2) + "\n")
        if output_dir.exists():
            stale = output_dir.parent / f".{output_dir.name}.stale-{uuid.uuid4().hex[:8]}"
            os.replace(output_dir, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp, output_dir)
    finally:
        torch.set_num_threads(threads_before)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("base model built at %s in %.1fs", output_dir, stats["build_seconds"])
    return output_dir


# ---------------------------------------------------------------------------------------------------------------
# Probe
# ---------------------------------------------------------------------------------------------------------------


def tag_prior(model, tokenizer, prompts: list[str], tag: str = "<think>") -> float:
    """Mean probability that the completion starts with " <think>" (the space token, then the tag)."""
    import torch

    space = tokenizer(" ", add_special_tokens=False)["input_ids"]
    tag_id = tokenizer.convert_tokens_to_ids(tag)
    probs = []
    for prompt in prompts:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        input_ids = torch.tensor([ids + space + [tag_id]])  # [1, seq_len]
        with torch.no_grad():
            logprobs = model(input_ids=input_ids).logits[0].log_softmax(-1)  # [seq_len, vocab]
        # log p(space, tag | prompt): the targets are the last len(space) + 1 tokens
        targets = input_ids[0, len(ids) :]
        positions = torch.arange(len(ids) - 1, input_ids.shape[1] - 1)
        probs.append(float(logprobs[positions, targets].sum().exp()))
    return sum(probs) / len(probs)


def _accuracy(scores, rows) -> tuple[float, dict]:
    by_level: dict[str, list[float]] = {}
    for s, row in zip(scores, rows, strict=True):
        by_level.setdefault(str(row.get("level", "all")), []).append(s.accuracy or 0.0)
    overall = sum(s.accuracy or 0.0 for s in scores) / max(1, len(scores))
    return overall, {level: sum(v) / len(v) for level, v in sorted(by_level.items())}


def probe(model_path: str | Path, rows: list[dict], max_new_tokens: int = 64, batch_size: int = 64) -> dict:
    """Greedy accuracy under the training template, the latent skill with `<think>` prefilled, and the tag prior.

    `rows` have `question` and `answer` (a GSM8K-style solution ending `#### N`, or the final answer itself).
    Completions are scored by `reson.core.rewards.score`, the scoring training and evaluation use.
    """
    if not rows:
        raise ValueError("probe needs at least one row with 'question' and 'answer'.")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reson.core.data import format_prompt
    from reson.core.generation import HFEngine, Request, Sampling
    from reson.core.rewards import score

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    engine = HFEngine(model, tokenizer, batch_size=batch_size)
    greedy = Sampling(max_new_tokens=max_new_tokens)
    golds = [final_answer(r) for r in rows]
    base_prompts = [format_prompt(r["question"], "r1_zero") for r in rows]
    think_prompts = [format_prompt(r["question"], "r1_zero_think") for r in rows]

    base = [g.text for g in engine.generate([Request(p) for p in base_prompts], greedy)]
    base_scores = score(base, golds, base_prompts)
    latent = [g.text for g in engine.generate([Request(p) for p in think_prompts], greedy)]
    latent_scores = score(latent, golds, think_prompts)
    base_acc, base_by_level = _accuracy(base_scores, rows)
    probe_acc, probe_by_level = _accuracy(latent_scores, rows)
    return {
        "count": len(rows),
        "base_accuracy": base_acc,
        "base_accuracy_by_level": base_by_level,
        "base_format": sum(s.format for s in base_scores) / len(rows),
        "base_think_usage": sum(c.lstrip().startswith("<think>") for c in base) / len(rows),
        "probe_accuracy": probe_acc,
        "probe_accuracy_by_level": probe_by_level,
        "tag_prior": tag_prior(model, tokenizer, base_prompts),
        "mean_completion_chars": sum(map(len, base)) / len(rows),
        "samples": [
            {"question": r["question"], "gold": g, "base": b, "probe": p}
            for r, g, b, p in zip(rows[:3], golds, base, latent, strict=False)
        ],
    }


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reson.miniature.pretrain",
        description="Build (or reuse) the miniature's tiny base model and probe it on held-out synthetic problems.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--output_dir", required=True, help="folder for the model (reused when already built)")
    parser.add_argument("--seed", type=int, default=0, help="pretraining seed: corpus, init, batch order")
    parser.add_argument("--num_texts", type=int, default=BaseModelConfig.num_texts, help="pretraining texts")
    parser.add_argument("--num_problems", type=int, default=200, help="held-out test problems to probe on")
    parser.add_argument("--eval_seed", type=int, default=0, help="seed of the held-out problems")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args(argv)
    if args.num_problems < 1:
        parser.error("--num_problems must be at least 1")

    # setup: one thread (BaseModelConfig.threads) and one kernel family, so the build repeats bit for bit
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    pin_cpu_kernels()
    import torch

    torch.set_num_threads(BaseModelConfig.threads)
    # build
    path = build_base_model(args.output_dir, seed=args.seed, num_texts=args.num_texts)
    stats = build_record(path)["stats"]
    # probe
    from reson.core.synthetic import problems

    start = time.perf_counter()
    result = probe(path, problems("test", args.num_problems, seed=args.eval_seed))
    result["probe_seconds"] = round(time.perf_counter() - start, 1)
    result.update({k: stats[k] for k in ("parameters", "pretrain_seconds", "final_loss", "tokens_per_second")})
    result["model_path"] = str(path)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"model:           {path}")
        print(f"parameters:      {stats['parameters']:,}")
        steps, loss = stats["steps"], stats["final_loss"]
        print(f"pretraining:     {stats['pretrain_seconds']}s, {steps} steps, final loss {loss:.3f}")
        print(f"base accuracy:   {result['base_accuracy']:.1%} (greedy, R1-Zero template, n={args.num_problems})")
        print(f"probe accuracy:  {result['probe_accuracy']:.1%} (greedy, <think> prefilled)")
        print(f"tag prior:       {result['tag_prior']:.1%} (p(' <think>') right after 'Assistant:')")
        print(f"by level (base): {result['base_accuracy_by_level']}  (probe): {result['probe_accuracy_by_level']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
