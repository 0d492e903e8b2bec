"""Generation backends for evaluation: batched transformers generation on any device, and vLLM on a GPU.

Both take a list of `Request`s (a prompt and a seed) and return one `Generation` per request, in order:

- **hf**: left-padded batches through `model.generate`, stopping a row at EOS or once its completion holds
  `</answer>` (the end of the answer under the R1-Zero template). Sampling draws every row from its own
  `torch.Generator` seeded by the request, so a sample does not depend on which batch it landed in (up to
  floating-point differences between batch shapes).
- **vllm**: `vllm.LLM` with a per-request `SamplingParams(seed=...)` and the same stop string; imported lazily,
  so this module (and `reson eval --help`) works where vLLM is not installed.

Tokens counted in a `Generation` are the completion's tokens up to and including the stop (EOS excluded).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

STOP_STRING = "</answer>"
BACKENDS = ("auto", "hf", "vllm")


@dataclass(frozen=True)
class Request:
    prompt: str
    seed: int = 0


@dataclass(frozen=True)
class Generation:
    text: str
    num_tokens: int
    truncated: bool  # hit max_new_tokens without EOS or the stop string


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def resolve_backend(backend: str) -> str:
    """ "auto" -> "vllm" when vLLM is installed and a CUDA GPU is visible, else "hf"; checks an explicit "vllm"."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}.")
    if backend == "vllm" and not vllm_available():
        raise ValueError(
            "backend 'vllm' needs vLLM: `pip install 'reson-llm[vllm]'` (Linux + CUDA), or use --backend hf."
        )
    if backend == "auto":
        if not vllm_available():
            return "hf"
        import torch

        return "vllm" if torch.cuda.is_available() else "hf"
    return backend


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def tokenizer_source(model_path: str) -> str:
    """Where the tokenizer lives: the model folder, or for a checkpoint saved without one, its run folder."""
    path = Path(model_path).expanduser()
    if path.is_dir() and not any((path / f).is_file() for f in TOKENIZER_FILES):
        parent = path.resolve().parent
        if any((parent / f).is_file() for f in TOKENIZER_FILES):
            return str(parent)
    return str(model_path)


def load_tokenizer(model_path: str):
    """The model's tokenizer, set up for batched generation (left padding, a pad token)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source(model_path))
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def make_generator(backend: str, model_path: str, tokenizer=None, dtype: str = "auto", device: str = "auto", seed=0):
    """A loaded generator for `backend` ("hf" or "vllm"); this is where the model's weights load."""
    if backend == "hf":
        return HFGenerator(model_path, tokenizer=tokenizer, dtype=dtype, device=device)
    if backend == "vllm":
        return VLLMGenerator(model_path, dtype=dtype, seed=seed)
    raise ValueError(f"unknown backend {backend!r}: choose hf or vllm.")


def _trim_at_stop(text: str) -> tuple[str, bool]:
    cut = text.find(STOP_STRING)
    if cut < 0:
        return text, False
    return text[: cut + len(STOP_STRING)], True


class HFGenerator:
    """Batched `model.generate` with left padding; one call generates one batch of requests."""

    name = "hf"

    def __init__(self, model_path: str, tokenizer=None, dtype: str = "auto", device: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM

        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model_path)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
        self.device = torch.device(device)
        if dtype == "auto":
            torch_dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        else:
            torch_dtype = getattr(torch, dtype)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype).to(self.device).eval()
        eos = self.model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in eos:
            eos.append(self.tokenizer.eos_token_id)
        self.eos_token_ids = eos
        # Token ids whose text can end "</answer>": only rows that just produced one of these are decoded.
        vocab = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
        self._gt_token_ids = torch.tensor([i for i, tok in enumerate(vocab) if tok and ">" in tok], dtype=torch.long)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def generate(
        self, requests: list[Request], max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0
    ) -> list[Generation]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        enc = self.tokenizer(
            [r.prompt for r in requests], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.device)
        prompt_len = enc["input_ids"].shape[1]
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,  # sampling, when asked, happens in _PerRowSampler; greedy picks its one token
            num_beams=1,
            repetition_penalty=1.0,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.eos_token_ids,
        )
        processors = LogitsProcessorList()
        if temperature > 0:
            processors.append(_PerRowSampler([r.seed for r in requests], temperature, top_p, self.device))
        stopping = StoppingCriteriaList([_StopString(self.tokenizer, prompt_len, self._gt_token_ids)])
        with torch.inference_mode():
            out = self.model.generate(
                **enc, generation_config=config, logits_processor=processors, stopping_criteria=stopping
            )
        completions = out[:, prompt_len:]  # [batch, new_tokens]
        ends = set(self.eos_token_ids) | {self.tokenizer.pad_token_id}
        return [to_generation(row, self.tokenizer, ends, max_new_tokens) for row in completions.tolist()]


def to_generation(row: list[int], tokenizer, ends: set[int], max_new_tokens: int) -> Generation:
    """One generated row: cut at the first EOS/pad and after `</answer>`; truncated when it ran out of tokens."""
    length = next((i for i, t in enumerate(row) if t in ends), len(row))
    text, stopped = _trim_at_stop(tokenizer.decode(row[:length], skip_special_tokens=True))
    truncated = length >= max_new_tokens and not stopped
    return Generation(text=text, num_tokens=length, truncated=truncated)


class _StopString:
    """Per-row stop once the generated text (not the prompt, which quotes the tags) contains `</answer>`."""

    def __init__(self, tokenizer, prompt_len: int, candidate_ids):
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.candidate_ids = candidate_ids
        self.window = len(STOP_STRING) + 2  # tokens: enough to cover the stop string however it splits

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if input_ids.shape[1] <= self.prompt_len:
            return done
        last = input_ids[:, -1]  # [batch]
        maybe = torch.isin(last, self.candidate_ids.to(last.device)).nonzero().flatten().tolist()
        if not maybe:
            return done
        start = max(self.prompt_len, input_ids.shape[1] - self.window)
        tails = self.tokenizer.batch_decode(input_ids[maybe, start:], skip_special_tokens=True)
        for row, tail in zip(maybe, tails, strict=True):
            if STOP_STRING in tail:
                done[row] = True
        return done


class _PerRowSampler:
    """Temperature and top-p sampling with one seeded generator per row; returns logits that make greedy pick
    the sampled token, so `generate(do_sample=False)` samples reproducibly per request."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device):
        import torch

        self.temperature = temperature
        self.top_p = top_p
        gen_device = device if device.type == "cuda" else torch.device("cpu")
        self.generators = [torch.Generator(device=gen_device).manual_seed(s) for s in seeds]
        self.gen_device = gen_device

    def __call__(self, input_ids, scores):
        import torch

        logits = scores.float() / self.temperature  # [batch, vocab]
        if self.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
            cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
            remove = cumulative > self.top_p
            remove[:, 1:] = remove[:, :-1].clone()  # keep the token that crosses top_p
            remove[:, 0] = False
            logits = logits.masked_fill(remove.scatter(1, order, remove), float("-inf"))
        probs = logits.softmax(dim=-1).to(self.gen_device)
        picked = torch.stack(
            [torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(self.generators)]
        ).flatten()  # [batch]
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(scores.shape[0], device=scores.device), picked.to(scores.device)] = 0.0
        return out


class VLLMGenerator:
    """vLLM offline inference; per-request seeds make sampled results independent of batching."""

    name = "vllm"

    def __init__(self, model_path: str, dtype: str = "auto", seed: int = 0):
        from vllm import LLM

        self.llm = LLM(model=str(model_path), tokenizer=tokenizer_source(model_path), dtype=dtype, seed=seed)
        self.tokenizer = self.llm.get_tokenizer()

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def generate(
        self, requests: list[Request], max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0
    ) -> list[Generation]:
        from vllm import SamplingParams

        params = [
            SamplingParams(
                temperature=temperature,
                top_p=top_p if temperature > 0 else 1.0,
                max_tokens=max_new_tokens,
                stop=[STOP_STRING],
                include_stop_str_in_output=True,
                seed=r.seed,
            )
            for r in requests
        ]
        outputs = self.llm.generate([r.prompt for r in requests], params, use_tqdm=False)
        results = []
        for out in outputs:
            choice = out.outputs[0]
            results.append(
                Generation(
                    text=choice.text, num_tokens=len(choice.token_ids), truncated=choice.finish_reason == "length"
                )
            )
        return results
