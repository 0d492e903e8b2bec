"""Emergence metrics during training: generate from fixed held-out canary prompts and measure how the model reasons.

At step 0, every `emergence_every` steps and at the last step, `EmergenceCallback` generates one completion per
canary prompt (sampled with the training settings, or greedily), scores them with `reson.core.rewards.score` and
`reson.core.metrics.completion_record`/`summarize` (the code evaluation uses, so the numbers mean the same thing in
both places), and logs:

- `emergence/think_usage_pct`: percentage of completions with a closed, non-empty think block;
- `emergence/avg_think_tokens`: mean think-block length in tokens, over completions that used one;
- `emergence/self_correction_rate`: share with a self-correction phrase (`reson.core.metrics.SELF_CORRECTION_PHRASES`)
  inside the think block;
- `emergence/self_correction_rate_correct`: share that self-correct and are right (Oat-Zero: keywords alone
  mislead);
- `emergence/canary_accuracy`, `emergence/format_compliance` (share graded 1.0 by the format reward),
  `emergence/mean_completion_tokens`, and `emergence/seconds` (the canaries' wall time).

The metrics go through the trainer's log path, so they reach TensorBoard, W&B and `trainer_state.json` like any
training metric. Every canary completion is appended with its step to `output_dir/emergence.jsonl`. Only the main
process generates, logs and writes (so under ZeRO-3 or FSDP, where it holds a shard of the weights, `reson train`
turns the canaries off). Canary sampling uses its own seed (seed + step) inside a forked RNG, so it
neither disturbs nor depends on the training random stream, and a resumed run repeats it exactly.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from transformers import TrainerCallback

from reson.core.rewards import DEFAULT_TIMEOUT

logger = logging.getLogger(__name__)

EMERGENCE_FILE = "emergence.jsonl"
METRIC_PREFIX = "emergence/"


class EmergenceLog:
    """`emergence.jsonl`: one JSON record per canary completion, each with its `step`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def records(self) -> list[dict]:
        """Every complete record; a line cut short by a crash is skipped."""
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def steps(self) -> set[int]:
        return {r["step"] for r in self.records()}

    def truncate_after(self, step: int) -> None:
        """Keep the records of steps <= `step` (all of them when resuming from that step), atomically."""
        kept = [r for r in self.records() if r["step"] <= step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".jsonl.tmp")
        with tmp.open("w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def append(self, records: list[dict]) -> None:
        """One write per step, flushed to disk before training moves on (and before that step's checkpoint)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in records))
            f.flush()
            os.fsync(f.fileno())


class EmergenceCallback(TrainerCallback):
    """Generate from the canaries at step 0, every `every` steps and at the last step; log and record the results.

    `canaries` are rows with `prompt`, `answer` (gold) and optionally `id` and `question`. `logger_fn(metrics)`
    sends metrics through the trainer's log path; `train()` connects it to `Trainer.log`, so they reach every
    reporting integration.
    """

    def __init__(
        self,
        canaries: list[dict],
        tokenizer,
        output_dir: str | Path,
        every: int = 50,
        max_new_tokens: int = 256,
        greedy: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        min_p: float | None = None,
        repetition_penalty: float = 1.0,
        reward_timeout: float = DEFAULT_TIMEOUT,
        seed: int = 0,
        batch_size: int = 64,
        logger_fn=None,
    ):
        self.canaries = canaries
        self.tokenizer = tokenizer
        self.log = EmergenceLog(Path(output_dir) / EMERGENCE_FILE)
        self.every = every
        self.max_new_tokens = max_new_tokens
        self.greedy = greedy
        self.sampling = {"temperature": temperature, "top_p": top_p, "top_k": top_k, "min_p": min_p}
        self.repetition_penalty = repetition_penalty
        self.reward_timeout = reward_timeout
        self.seed = seed
        self.batch_size = batch_size
        self.logger_fn = logger_fn
        self._done: set[int] = set()

    # -- when ----------------------------------------------------------------------------------------------------

    def due(self, step: int, max_steps: int) -> bool:
        if not self.canaries or self.every <= 0 or step in self._done:
            return False
        return step % self.every == 0 or step == max_steps

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero:
            self._done = self.log.steps()
            self._maybe_run(state, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero:
            self._maybe_run(state, model)

    def _maybe_run(self, state, model) -> None:
        if model is None or not self.due(state.global_step, state.max_steps):
            return
        metrics = self.run(model, state.global_step)
        self._done.add(state.global_step)
        if self.logger_fn is not None:
            self.logger_fn(metrics)

    # -- what ----------------------------------------------------------------------------------------------------

    def run(self, model, step: int) -> dict[str, float]:
        """Generate, score, append to emergence.jsonl; returns the `emergence/*` metrics."""
        from reson.core.metrics import completion_record, summarize
        from reson.core.parsing import split_completion
        from reson.core.rewards import score

        start = time.perf_counter()
        prompts = [row["prompt"] for row in self.canaries]
        completions, lengths = self.generate(model, prompts, step)
        golds = [row["answer"] for row in self.canaries]
        scores = score(completions, golds, prompts, timeout=self.reward_timeout)
        records = []
        for i, (row, completion, n_tokens, s) in enumerate(
            zip(self.canaries, completions, lengths, scores, strict=True)
        ):
            think = split_completion(completion, row["prompt"]).think
            think_tokens = len(self.tokenizer(think, add_special_tokens=False)["input_ids"]) if think else 0
            record = completion_record(completion, row["prompt"], s, num_think_tokens=think_tokens)
            records.append(
                {
                    "step": step,
                    "canary": i,
                    "id": row.get("id"),
                    "question": row.get("question"),
                    "gold": row["answer"],
                    "completion": completion,
                    "completion_tokens": n_tokens,
                    "extracted": s.extracted,
                    **record,
                }
            )
        self.log.append(records)
        summary = summarize(records)
        metrics = {
            "think_usage_pct": summary["think_usage_pct"],
            "avg_think_tokens": summary["avg_think_tokens"],
            "self_correction_rate": summary["self_correction_rate"],
            "self_correction_rate_correct": summary["self_correction_rate_correct"],
            "canary_accuracy": summary["accuracy"],
            "format_compliance": summary["format_compliance"],
            "mean_completion_tokens": sum(lengths) / len(lengths),
            "seconds": time.perf_counter() - start,
        }
        return {METRIC_PREFIX + k: float(v) for k, v in metrics.items()}

    def generate(self, model, prompts: list[str], step: int) -> tuple[list[str], list[int]]:
        """One completion per prompt with the training's sampling settings (or greedy); [texts], [token counts]."""
        import torch

        was_training = model.training
        padding_side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        kwargs = {"max_new_tokens": self.max_new_tokens, "pad_token_id": pad, "eos_token_id": eos}
        if self.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, repetition_penalty=self.repetition_penalty, **self.sampling)
        device = next(model.parameters()).device
        devices = [device.index or 0] if device.type == "cuda" else []
        texts, lengths = [], []
        model.eval()
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.manual_seed(self.seed + step)
                for start in range(0, len(prompts), self.batch_size):
                    batch = prompts[start : start + self.batch_size]
                    enc = self.tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
                    enc = enc.to(device)
                    out = model.generate(**enc, use_cache=True, **kwargs)
                    completion_ids = out[:, enc["input_ids"].shape[1] :]  # [batch, new_tokens]
                    for row in completion_ids.tolist():
                        length = next((j for j, t in enumerate(row) if t == eos), len(row))
                        lengths.append(length)
                        texts.append(self.tokenizer.decode(row[:length], skip_special_tokens=True))
        finally:
            self.tokenizer.padding_side = padding_side
            model.train(was_training)
        return texts, lengths
