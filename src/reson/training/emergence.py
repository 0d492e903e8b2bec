"""Emergence metrics during training: generate from fixed held-out canary prompts and measure how the model reasons.

At step 0, every `emergence_every` steps and at the last step, `EmergenceCallback` generates one completion per
canary prompt (sampled with the training settings, or greedily) through `reson.core.generation`, scores them with
`reson.core.rewards.score` and `reson.core.metrics` (the code evaluation uses, so the numbers mean the same thing in
both places), and logs:

- `emergence/think_usage`: share of completions with a closed, non-empty think block;
- `emergence/avg_think_tokens`: mean think-block length in tokens, over completions that used one;
- `emergence/self_correction_rate`: share with a self-correction phrase inside the think block;
- `emergence/self_correction_rate_among_thinking`: the same share among completions that think (the plain rate rises
  with think usage alone);
- `emergence/self_correction_rate_correct`: share that self-correct and are right (Oat-Zero: keywords alone mislead);
- for Countdown canaries, `emergence/avg_candidates` (candidate expressions tried in the thinking),
  `emergence/rejection_rate` (share that rejected a candidate, its value found wrong, and went on) and
  `emergence/verified_rate` (share whose final answer was verified in the thinking): counted on the expressions, not
  keywords (`reson.core.countdown.search_measures`);
- `emergence/canary_accuracy`, `emergence/format_compliance` (share graded 1.0 by the format reward),
  `emergence/mean_completion_tokens`, and `emergence/seconds` (the canaries' wall time).

The metrics go through the trainer's log path, so they reach TensorBoard, W&B and `trainer_state.json` like any
training metric (TensorBoard and W&B show them as `train/emergence/...`). The completions themselves go to
`output_dir/emergence.jsonl` (one record per canary, with its step and prompt), to TensorBoard as a text summary
(`emergence/completions`) and to W&B as a table, so the aha moment can be read while the run goes on. Only the main
process generates, logs and writes (under ZeRO-3 or FSDP, where it holds a shard of the weights, the canaries are
off). Each canary samples from its own seed (the run's seed, the step, the canary), so it neither disturbs nor
depends on the training random stream, and a resumed run repeats it exactly.
"""

from __future__ import annotations

import html
import logging
import time
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback

from reson.core import folders, generation
from reson.core.jsonl import append_jsonl, read_jsonl, write_jsonl
from reson.core.metrics import SEARCH_METRICS, completion_record, summarize
from reson.core.rewards import score_rows
from reson.training.callbacks import log_through_trainer, parameters_sharded
from reson.training.faults import out_of_memory

logger = logging.getLogger(__name__)

METRIC_PREFIX = "emergence/"
TABLE_COLUMNS = ("step", "canary", "question", "completion", "extracted", "gold", "accuracy", "format")


class EmergenceLog:
    """`emergence.jsonl`: one JSON record per canary completion, each with its `step`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def records(self) -> list[dict]:
        """Every complete record; a line cut short or damaged by a crash is skipped."""
        return read_jsonl(self.path).records

    def steps(self) -> set[int]:
        return {r["step"] for r in self.records()}

    def truncate_after(self, step: int) -> None:
        """Keep the records of steps <= `step` (all of them when resuming from that step), atomically."""
        write_jsonl(self.path, [r for r in self.records() if r["step"] <= step])

    def append(self, records: list[dict]) -> None:
        """One write per step, flushed to disk before training moves on (and before that step's checkpoint)."""
        append_jsonl(self.path, records)


class EmergenceCallback(TrainerCallback):
    """Generate from the canaries at step 0, every `config.emergence_every` steps and at the last step; log and
    record the results. `canaries` are rows with `prompt`, `answer` (gold) and optionally `id` and `question`."""

    def __init__(self, canaries: list[dict], tokenizer, output_dir: str | Path, config, batch_size: int = 64):
        self.canaries = canaries
        self.tokenizer = tokenizer
        self.log = EmergenceLog(Path(output_dir) / folders.EMERGENCE_FILE)
        self.every = config.emergence_every
        self.sampling = generation.Sampling(
            max_new_tokens=config.max_completion_length,
            temperature=0.0 if config.emergence_greedy else config.temperature,
            top_p=config.top_p,
            top_k=config.top_k or 0,
            min_p=config.min_p,
            repetition_penalty=config.repetition_penalty,
            stop=tuple((config.generation_kwargs or {}).get("stop") or ()),  # as training stops, where it does
        )
        self.reward_timeout = config.reward_timeout
        self.seed = config.seed
        self.batch_size = batch_size
        self.logger_fn = None
        self.trainer = None
        self._done: set[int] = set()

    def attach(self, trainer) -> None:
        """Log through `trainer` (so the metrics reach every reporting integration); canaries off where the weights
        are sharded, since the main process generating alone would wait forever for the other shards."""
        self.trainer = trainer
        self.logger_fn = lambda metrics: log_through_trainer(trainer, metrics)
        if self.canaries and parameters_sharded(trainer):
            logger.warning("emergence canaries are off under ZeRO-3/FSDP: evaluate checkpoints with reson eval.")
            self.canaries = []

    # -- when ----------------------------------------------------------------------------------------------------

    def due(self, step: int, max_steps: int) -> bool:
        if not self.canaries or self.every <= 0 or step in self._done:
            return False
        return step % self.every == 0 or step == max_steps

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero:
            self._done = self.log.steps()
            self._maybe_run(args, state, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero:
            self._maybe_run(args, state, model)

    def _maybe_run(self, args, state, model) -> None:
        if model is None or not self.due(state.global_step, state.max_steps):
            return
        try:
            metrics, records = self.run(model, state.global_step)
        except torch.OutOfMemoryError as error:
            raise out_of_memory(error, "the canaries' generation", state.global_step) from None
        self._done.add(state.global_step)
        if self.logger_fn is not None:
            self.logger_fn(metrics)
        self._log_completions(args, state.global_step, records)

    # -- what ----------------------------------------------------------------------------------------------------

    def run(self, model, step: int) -> tuple[dict[str, float], list[dict]]:
        """Generate, score, append to emergence.jsonl; returns the `emergence/*` metrics and the records."""
        start = time.perf_counter()
        engine = generation.HFEngine(model, self.tokenizer, batch_size=self.batch_size)
        requests = [
            generation.Request(row["prompt"], generation.sample_seed(self.seed, "canary", step, i))
            for i, row in enumerate(self.canaries)
        ]
        outputs = engine.generate(requests, self.sampling)
        prompts = [row["prompt"] for row in self.canaries]
        scores = score_rows([o.text for o in outputs], self.canaries, prompts, timeout=self.reward_timeout)
        records = []
        for i, (row, out, s) in enumerate(zip(self.canaries, outputs, scores, strict=True)):
            records.append(
                {
                    "step": step,
                    "canary": i,
                    "id": row.get("id"),
                    "question": row.get("question"),
                    "prompt": row["prompt"],
                    "gold": row["answer"],
                    **{key: row[key] for key in ("nums", "target") if key in row},  # Countdown's, to rescore
                    "completion": out.text,
                    "completion_tokens": out.num_tokens,
                    "extracted": s.extracted,
                    **completion_record(out.text, row["prompt"], s, self.tokenizer),
                }
            )
        self.log.append(records)
        summary = summarize(records)
        metrics = {
            key: summary[key]
            for key in (
                "think_usage",
                "avg_think_tokens",
                "self_correction_rate",
                "self_correction_rate_among_thinking",
                "self_correction_rate_correct",
                "format_compliance",
                *SEARCH_METRICS,
            )
            if key in summary
        }
        metrics["canary_accuracy"] = summary["accuracy"]
        metrics["mean_completion_tokens"] = sum(o.num_tokens for o in outputs) / len(outputs)
        metrics["seconds"] = time.perf_counter() - start
        return {METRIC_PREFIX + k: float(v) for k, v in metrics.items()}, records

    def _log_completions(self, args, step: int, records: list[dict]) -> None:
        """The step's canary completions as a TensorBoard text summary and a W&B table, where those are on."""
        rows = [[r.get(column) for column in TABLE_COLUMNS] for r in records]
        tensorboard = next(
            (
                c
                for c in (self.trainer.callback_handler.callbacks if self.trainer else [])
                if isinstance(c, TensorBoardCallback)
            ),
            None,
        )
        if tensorboard is not None and tensorboard.tb_writer is not None:
            header = "| " + " | ".join(TABLE_COLUMNS) + " |\n|" + "---|" * len(TABLE_COLUMNS) + "\n"
            body = "".join("| " + " | ".join(_cell(v) for v in row) + " |\n" for row in rows)
            tensorboard.tb_writer.add_text(f"{METRIC_PREFIX}completions", header + body, step)
            tensorboard.tb_writer.flush()
        if "wandb" in (args.report_to or []):
            import wandb

            if wandb.run is not None:
                wandb.run.log(
                    {
                        f"{METRIC_PREFIX}completions": wandb.Table(columns=list(TABLE_COLUMNS), data=rows),
                        "train/global_step": step,
                    }
                )


def _cell(value) -> str:
    """A markdown table cell: model text escaped, pipes and newlines kept from breaking the table."""
    return html.escape(str(value)).replace("|", "\\|").replace("\n", "<br>")
