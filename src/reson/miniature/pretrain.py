"""Pretrain the miniature's tiny base model on synthetic arithmetic: the cached build and its command.

    python -m reson.miniature.pretrain --output_dir runs/base-seed0 --seed 0
    python -m reson.miniature.pretrain --output_dir runs/base-countdown-seed0 --task countdown   # the search task

builds (or reuses) the base model and prints its size, pretraining time, greedy accuracy under the R1-Zero
template, the probe's accuracy (with `<think>` prefilled) and the prior for the think tag (`reson.miniature.probe`).
The texts come from `reson.miniature.corpus`. The build of seed 0 ships inside the package
(`reson.miniature.shipped`), so `reson demo` runs it only for `--rebuild_base` or another `--pretrain_seed`.

What makes it learn in ~8 minutes on one thread (docs/benchmarks.md, "Miniature base model"): a small model with
many steps (hidden 64, 4 layers, 279k parameters, batch 8, 9,000 steps) rather than a wide one with few
(hidden 128, 1,250 steps: probe 2.5-9%), and the R1 template's fixed preamble (79 of the ~114 tokens of an R1
text) run once per batch, its keys and values shared by the batch's rows, which is exact and cuts those texts'
compute by ~3x. Somewhere between ~3,700 and ~7,000 steps the arithmetic clicks (the probe goes from ~30% to
~85% within a thousand or two); where exactly moves with the floats' last bits (thread count, CPU kernels), so
the schedule runs well past it.

Reproducibility: the build always runs with `BaseModelConfig.threads` torch threads (1), whatever the caller set,
because the thread count changes how float sums are split and so the weights; with it, a build repeats bit for bit
on one machine under any load. The CPU's kernels change the bits too (ATen's AVX-512 or AVX2 family, MKL's code
path, which MKL picks by vendor as well as by extension): `reson.core.machine.pin_cpu_kernels()` pins ATen to AVX2 and
MKL to its COMPATIBLE branch, the one it runs the same on Intel and AMD processors. AdamW is the fused one, ATen's own
kernel: the for-loop AdamW takes its square roots from MKL's vector maths.

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

from reson.core.data import format_prompt, load_problems
from reson.core.help import HelpFormatter
from reson.core.machine import cpu_kernel_settings, pin_cpu_kernels, processor_name
from reson.miniature import search_corpus
from reson.miniature.corpus import pretraining_texts
from reson.miniature.probe import probe
from reson.miniature.tasks import TASKS
from reson.miniature.tiny_model import TAG_TOKENS, build_model, train_tokenizer

logger = logging.getLogger(__name__)

BUILD_RECORD = "reson_base_model.json"  # written last: its presence with matching settings marks a complete build


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
    # the task: "arithmetic" (reson.miniature.corpus) or "countdown", the search task (reson.miniature.search_corpus)
    task: str = "arithmetic"
    search_share: float = 0.2  # countdown: share of R1-tagged texts that search; the others guess without a check
    max_candidates: int = 9  # countdown: candidates a search trace tries before it gives up (9: all, it always finds)
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
            "search_share",
        )
        outside = [f"{name}={getattr(self, name)}" for name in fractions if not 0.0 <= getattr(self, name) <= 1.0]
        if outside:
            raise ValueError(f"{', '.join(outside)}: these are fractions, give values between 0 and 1.")
        if self.num_texts < self.batch_size:
            raise ValueError(f"num_texts ({self.num_texts}) must be at least batch_size ({self.batch_size}).")
        if self.check_style not in ("inverse", "recompute"):
            raise ValueError(f"check_style {self.check_style!r}: choose 'inverse' or 'recompute'.")
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r}: choose one of {', '.join(TASKS)}.")
        if self.max_candidates < 1:
            raise ValueError(f"max_candidates ({self.max_candidates}) must be at least 1.")
        if self.threads < 1:
            raise ValueError(f"threads ({self.threads}) must be at least 1.")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must divide by num_heads ({self.num_heads}).")


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
    # fused: ATen's own kernel, as the GRPO trainer's (adamw_torch_fused); the for-loop AdamW takes its square roots
    # from MKL's vector maths, one more place where the processor decides the bits
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, betas=(0.9, 0.95), fused=True
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
        saved = recorded_config(path)
    except (ValueError, KeyError, TypeError):
        return False
    needed = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    return saved == config and all((path / name).is_file() for name in needed)


def build_record(path: str | Path) -> dict:
    """The record a completed build wrote (its config and pretraining stats)."""
    return json.loads((Path(path) / BUILD_RECORD).read_text())


def recorded_config(path: str | Path) -> BaseModelConfig:
    """The config a completed build recorded; a field added since has its default, the behaviour the build had."""
    return BaseModelConfig(**build_record(path)["config"])


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

    threads_before = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.parent / f".{output_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        # data
        start = time.perf_counter()
        texts = (search_corpus.pretraining_texts if config.task == "countdown" else pretraining_texts)(config)
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
        stats["cpu_kernels"] = cpu_kernel_settings()  # the other half of what fixes the bits
        stats["torch"] = torch.__version__
        stats["processor"] = processor_name()
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
    parser.add_argument(
        "--task",
        choices=tuple(TASKS),
        default="arithmetic",
        help="the corpus: arithmetic (default) or countdown (search)",
    )
    parser.add_argument("--num_texts", type=int, default=None, help="pretraining texts (default: the task's)")
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
    task = TASKS[args.task]
    settings = dict(task.base_settings)
    if args.num_texts is not None:
        settings = {**settings, "num_texts": args.num_texts}
    path = build_base_model(args.output_dir, seed=args.seed, **settings)
    stats = build_record(path)["stats"]
    # probe
    start = time.perf_counter()
    rows = load_problems(task.dataset, "test", size=args.num_problems, seed=args.eval_seed)
    result = probe(path, rows, max_new_tokens=task.max_completion_length)
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
