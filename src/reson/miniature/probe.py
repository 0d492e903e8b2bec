"""Probe a miniature base model: how it answers under the training template, and the skill RL can select.

`probe` decodes greedily twice: under the R1-Zero template as training prompts it (what the base model does on its
own), and with `<think>` prefilled (the latent reasoning skill it learnt under another template); `tag_prior` is the
probability that it opens a think block by itself. A base model worth running GRPO on has a high probe accuracy, a
low direct accuracy and a small but nonzero tag prior.
"""

from __future__ import annotations

from pathlib import Path

from reson.core import models
from reson.core.data import format_prompt
from reson.core.generation import HFEngine, Request, Sampling
from reson.core.metrics import completion_record
from reson.core.rewards import score_rows
from reson.miniature.corpus import final_answer


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

    `rows` have `question` and `answer` (a GSM8K-style solution ending `#### N`, or the final answer itself), or are
    Countdown rows (`nums`, `target`). Completions are scored by `reson.core.rewards.score_rows`, the scoring training
    and evaluation use.
    """
    if not rows:
        raise ValueError("probe needs at least one row with 'question' and 'answer'.")
    from transformers import AutoModelForCausalLM

    tokenizer = models.load_tokenizer(str(model_path))
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    engine = HFEngine(model, tokenizer, batch_size=batch_size)
    greedy = Sampling(max_new_tokens=max_new_tokens)
    golds = [final_answer(r) for r in rows]
    base_prompts = [format_prompt(r["question"], "r1_zero") for r in rows]
    think_prompts = [format_prompt(r["question"], "r1_zero_think") for r in rows]

    base = [g.text for g in engine.generate([Request(p) for p in base_prompts], greedy)]
    graded = [{**r, "answer": g} for r, g in zip(rows, golds, strict=True)]  # the final answer, or nums and target
    base_scores = score_rows(base, graded, base_prompts)
    latent = [g.text for g in engine.generate([Request(p) for p in think_prompts], greedy)]
    latent_scores = score_rows(latent, graded, think_prompts)
    base_acc, base_by_level = _accuracy(base_scores, rows)
    probe_acc, probe_by_level = _accuracy(latent_scores, rows)
    return {
        "count": len(rows),
        "base_accuracy": base_acc,
        "base_accuracy_by_level": base_by_level,
        "base_format": sum(s.format for s in base_scores) / len(rows),
        "base_think_usage": sum(
            completion_record(c, p, s)["think_used"] for c, p, s in zip(base, base_prompts, base_scores, strict=True)
        )
        / len(rows),
        "probe_accuracy": probe_acc,
        "probe_accuracy_by_level": probe_by_level,
        "tag_prior": tag_prior(model, tokenizer, base_prompts),
        "mean_completion_chars": sum(map(len, base)) / len(rows),
        "samples": [
            {"question": r["question"], "gold": g, "base": b, "probe": p}
            for r, g, b, p in zip(rows[:3], golds, base, latent, strict=False)
        ],
    }
