"""Sampling GRPO's completions on a CPU: ``model.generate``'s tokens, without its finished rows.

``model.generate`` keeps every row of the batch in each forward until the longest completion ends: a finished row
is fed padding, and its key/value cache grows and is copied like a live one. On a GPU the extra rows ride along in
parallel; on a CPU every row costs its share. In the search task a few completions of each step's 64 run to the
192-token limit while most stop after 60, so most of ``generate``'s work went to rows already done. ``sample``
decodes with ``reson.core.generation.decode``, which drops a row from the batch and its cache when it ends, and
draws as ``generate`` draws: temperature, then top-k, then top-p (transformers' order of its warpers), then torch's
multinomial, which for one sample is the argmax of the probabilities over exponential noise of the batch's full
shape (its CPU kernel). Each step draws that noise for every row of the batch, finished or not, so the random stream
moves as under ``generate`` and a run samples the same completions, token for token (tests/test_sampler.py), in
0.36-0.56 of the time (``bench/bench_sampler.py``, Intel Xeon).

    completion_ids = sample(model, prompt_ids, max_new_tokens=192, temperature=1.0, eos_ids={0}, pad_id=0)
"""

from __future__ import annotations

import torch

from reson.core.generation import decode


def sample(
    model,
    prompt_ids: list[list[int]],
    *,
    max_new_tokens: int,
    temperature: float,
    eos_ids: set[int],
    pad_id: int,
    top_k: int = 0,
    top_p: float = 1.0,
) -> list[list[int]]:
    """One completion per prompt: its token ids up to and including the first EOS, or `max_new_tokens` of them."""
    device = next(model.parameters()).device
    width = max(len(ids) for ids in prompt_ids)
    input_ids = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids in prompt_ids], device=device)
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompt_ids], device=device)
    eos = torch.tensor(sorted(eos_ids), device=device)

    def pick(sequences, scores, rows):
        probabilities = _probabilities(scores, temperature, top_k, top_p)
        noise = torch.empty(len(prompt_ids), probabilities.shape[-1], device=device).exponential_()
        return (probabilities / noise[rows]).argmax(dim=-1)  # torch.multinomial(probabilities, 1) on the full batch

    return decode(model, input_ids, mask, max_new_tokens, pick, lambda sequences: torch.isin(sequences[:, -1], eos))


def _probabilities(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """transformers' TemperatureLogitsWarper, TopKLogitsWarper and TopPLogitsWarper, in that order, then softmax."""
    scores = logits / temperature
    if 0 < top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k).values[:, -1:]
        scores = scores.masked_fill(scores < kth, -float("inf"))
    if top_p < 1.0:
        ascending, order = torch.sort(scores)
        cumulative = ascending.softmax(-1).cumsum(-1)
        drop = cumulative <= 1 - top_p
        drop[:, -1] = False  # keep at least the most likely token
        scores = scores.masked_fill(drop.scatter(1, order, drop), -float("inf"))
    return scores.softmax(-1)
