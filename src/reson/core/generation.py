"""One generation engine for evaluation, the emergence canaries, the miniature's probe and chat.

    engine = load_engine("auto", "runs/grpo")                   # hf, vllm or mlx, from the folder and the machine
    engine = HFEngine(model, tokenizer)                          # a model already in memory (the canaries)
    outputs = engine.generate([Request(prompt, seed=7)], Sampling(max_new_tokens=64, temperature=0.7))
    for item in engine.stream(prompt, Sampling(temperature=0.6)):  # text pieces as they come, then the Generation
        ...

Every backend encodes prompts without added special tokens (the templates are plain text), stops a row at EOS or once
its completion holds a stop string (``</answer>``: the end of an answer under the R1-Zero template; the text keeps
it), decodes with the model's transformers tokenizer skipping special tokens, and samples each request from its own
seeded generator, so a sample does not depend on which batch it landed in, nor on any global random state (the
canaries sample in the middle of training without touching the trainer's random stream).

- **hf**: left-padded batches through ``decode``: ``model.generate``'s greedy loop with the model's key/value cache,
  except that a row leaves the batch when it ends (``generate`` feeds finished rows padding until the longest one
  ends: on a CPU, most of the work when a few completions run long); sampling (temperature, top-p, top-k, min-p)
  picks each row's token from its own generator; streaming runs the same loop in a thread.
- **vllm**: ``vllm.LLM`` with one ``SamplingParams(seed=...)`` per request; imported only when used.

A LoRA run (an adapter folder) is served merged into its base by every backend that takes transformers folders:
``hf`` merges it in memory, ``vllm``, which cannot load an adapter folder, into a temporary folder it loads from
(``reson.core.lora``); ``mlx`` takes the folder `reson convert` writes, merged too.
- **mlx**: mlx-lm's ``generate_step`` with its sampler (a converted model folder, on a Mac or Linux CPU); imported
  only when used, and never with torch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import queue
import tempfile
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from reson.core import models

BACKENDS = ("auto", "hf", "vllm", "mlx")
DEFAULT_MAX_COMPLETION_LENGTH = 1536  # the main recipe's; a model `reson train` wrote is given its run's own
HF_BATCH_SIZE = 32  # rows decoded together on the hf backend
ALIASES = {"transformers": "hf"}  # what people call the hf backend
STOP = ("</answer>",)
MLX_MISSING = (
    "the MLX backend needs mlx and mlx-lm: on a Mac `pip install -r requirements-mac.txt`, on Linux "
    "`pip install 'reson-llm[mlx]'` (CPU wheels)"
)


class BackendError(ValueError):
    """A backend that cannot serve this model on this machine; the message says what to install or choose."""


@dataclass(frozen=True)
class Sampling:
    """How to decode: ``temperature`` 0 is greedy; ``top_k`` 0 and ``min_p`` None are off."""

    max_new_tokens: int = DEFAULT_MAX_COMPLETION_LENGTH
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float | None = None
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = STOP


@dataclass(frozen=True)
class Request:
    prompt: str
    seed: int = 0


@dataclass(frozen=True)
class Generation:
    text: str
    num_tokens: int  # generated tokens up to the stop, EOS excluded
    finish_reason: str  # "stop": EOS or a stop string; "length": ran out of max_new_tokens

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


def sample_seed(seed: int, *parts) -> int:
    """A per-request seed from a run seed and what identifies the sample (dataset, problem, sample index, step)."""
    digest = hashlib.sha256("/".join(map(str, (seed, *parts))).encode()).digest()
    return int.from_bytes(digest[:7], "big")


# ---------------------------------------------------------------------------------------------------------------------
# Choosing and loading a backend


def mlx_available() -> bool:
    """Whether mlx (with a working backend: Metal on a Mac, `mlx[cpu]` on Linux) and mlx-lm import."""
    if importlib.util.find_spec("mlx_lm") is None:
        return False
    try:
        import mlx.core  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, model: str) -> str:
    """The backend for ``model``: "auto" follows an MLX folder to mlx, else vLLM when installed with a CUDA GPU, else
    hf; an explicit choice is checked against the folder and the machine (BackendError)."""
    backend = ALIASES.get(backend, backend)
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}.")
    fmt = models.model_format(model)
    if backend == "auto":
        if fmt == "mlx":
            backend = "mlx"
        elif importlib.util.find_spec("vllm") is not None and _cuda():
            backend = "vllm"
        else:
            backend = "hf"
    if backend == "mlx" and not mlx_available():
        raise BackendError(f"{model} needs MLX, and {MLX_MISSING}.")
    if backend == "mlx" and fmt == "hf":
        raise BackendError(
            f"{model} is a transformers model: convert it first (reson convert --model_name_or_path {model}), or use "
            "--backend hf."
        )
    if backend in ("hf", "vllm") and fmt == "mlx":
        raise BackendError(f"{model} is an MLX model (written by reson convert): use --backend mlx.")
    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise BackendError(
            "backend 'vllm' needs vLLM: `pip install 'reson-llm[vllm]'` (Linux + CUDA), or --backend hf."
        )
    if backend == "hf" and importlib.util.find_spec("torch") is None:
        raise BackendError(
            f"{model} needs torch for the hf backend: `pip install 'reson-llm[train]'`, or convert it to MLX."
        )
    return backend


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def load_engine(
    backend: str, model: str, dtype: str = "auto", device: str = "auto", seed: int = 0, batch_size: int | None = None
):
    """A loaded engine for ``model`` on ``backend`` (resolved first): this is where the weights load. ``batch_size``
    is the hf backend's rows decoded together (vLLM schedules its own batches; MLX decodes one at a time)."""
    backend = resolve_backend(backend, model)
    if backend == "hf":
        return HFEngine.from_pretrained(model, dtype=dtype, device=device, batch_size=batch_size or HF_BATCH_SIZE)
    if backend == "vllm":
        return VLLMEngine(model, dtype=dtype, seed=seed)
    return MLXEngine(model)


def _eos_ids(tokenizer, configured) -> set[int]:
    eos = {configured} if isinstance(configured, int) else set(configured or [])
    if tokenizer.eos_token_id is not None:
        eos.add(tokenizer.eos_token_id)
    return eos


def _cut_at_stop(text: str, stop: tuple[str, ...], start: int = 0) -> int:
    """The end of the first stop string found at or after ``start`` (-1 if none)."""
    cuts = [i + len(s) for s in stop if (i := text.find(s, start)) >= 0]
    return min(cuts, default=-1)


def decode_stream(tokenizer, tokens, eos_ids: set[int], sampling: Sampling) -> Iterator[str | Generation]:
    """Token ids -> text pieces as they come, then the Generation. EOS ends it (not counted, not decoded), so does a
    stop string (kept in the text) or the ``max_new_tokens``-th token; a piece that ends inside a multi-byte
    character is held back until it is whole."""
    ids: list[int] = []
    text, shown, finish = "", 0, "length"
    for token in tokens:
        if token in eos_ids:
            finish = "stop"
            break
        ids.append(token)
        text = tokenizer.decode(ids, skip_special_tokens=True)
        cut = _cut_at_stop(text, sampling.stop, max(0, shown - max(map(len, sampling.stop), default=0)))
        if cut >= 0:
            text, finish = text[:cut], "stop"
            break
        if len(ids) >= sampling.max_new_tokens:
            break
        if not text.endswith("\ufffd"):
            yield text[shown:]
            shown = len(text)
    if text[shown:]:
        yield text[shown:]
    yield Generation(text=text, num_tokens=len(ids), finish_reason=finish)


# ---------------------------------------------------------------------------------------------------------------------
# transformers


class HFEngine:
    """A loaded transformers model, decoded by ``decode``: batched (left padding), or one request streamed."""

    name = "hf"

    def __init__(self, model, tokenizer, batch_size: int = HF_BATCH_SIZE):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.eos_token_ids = _eos_ids(tokenizer, getattr(model.generation_config, "eos_token_id", None))
        self._pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._stop_tokens: dict[tuple[str, ...], object] = {}  # stop strings -> the token ids that can end one

    @classmethod
    def from_pretrained(
        cls, model: str, dtype: str = "auto", device: str = "auto", batch_size: int = HF_BATCH_SIZE
    ) -> HFEngine:
        import torch
        from transformers import AutoModelForCausalLM

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
        if dtype == "auto":  # bf16 where the GPU runs it natively, fp16 on older GPUs, fp32 elsewhere
            dtype = "float32"
            if device.startswith("cuda"):
                dtype = "bfloat16" if torch.cuda.is_bf16_supported(including_emulation=False) else "float16"
        if models.is_adapter(model):  # a LoRA run: its base with the adapter merged
            from reson.core.lora import load_merged

            loaded = load_merged(model, dtype=getattr(torch, dtype)).to(device).eval()
        else:
            loaded = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, dtype)).to(device).eval()
        return cls(loaded, models.load_tokenizer(model), batch_size=batch_size)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def generate(self, requests: list[Request], sampling: Sampling) -> list[Generation]:
        """One Generation per request, in order, in batches of ``batch_size``."""
        out = []
        for start in range(0, len(requests), self.batch_size):
            out += [
                self._finish(row, sampling)
                for row in self._generate_ids(requests[start : start + self.batch_size], sampling)
            ]
        return out

    def _finish(self, row: list[int], sampling: Sampling) -> Generation:
        """One generated row: cut at the first EOS or pad, decoded once, cut after a stop string."""
        ends = self.eos_token_ids | {self._pad}
        length = next((i for i, token in enumerate(row) if token in ends), len(row))
        text = self.tokenizer.decode(row[:length], skip_special_tokens=True)
        cut = _cut_at_stop(text, sampling.stop)
        if cut >= 0:
            return Generation(text[:cut], length, "stop")
        return Generation(text, length, "length" if length >= sampling.max_new_tokens else "stop")

    def stream(self, prompt: str, sampling: Sampling, seed: int = 0) -> Iterator[str | Generation]:
        """Text pieces of one completion as they are generated, then its Generation; closing the iterator stops the
        generation (Ctrl-C in chat)."""
        tokens: queue.Queue = queue.Queue()
        cancel = threading.Event()
        done = object()

        def run():
            try:
                self._generate_ids([Request(prompt, seed)], sampling, lambda _, token: tokens.put(token), cancel)
            finally:
                tokens.put(done)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()

        def ids():
            while (token := tokens.get()) is not done:
                yield token

        try:
            yield from decode_stream(self.tokenizer, ids(), self.eos_token_ids, sampling)
        finally:
            cancel.set()
            worker.join()

    def _generate_ids(
        self, requests: list[Request], sampling: Sampling, on_token=None, cancel=None
    ) -> list[list[int]]:
        """Each request's new tokens, up to and including the one that ended it (EOS or a stop string's end)."""
        import torch
        from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

        device = next(self.model.parameters()).device
        enc = self.tokenizer(
            [r.prompt for r in requests],
            return_tensors="pt",
            padding=True,
            padding_side="left",
            add_special_tokens=False,
        ).to(device)
        penalty = None
        if sampling.repetition_penalty != 1.0:
            penalty = RepetitionPenaltyLogitsProcessor(sampling.repetition_penalty)
        sampler = _PerRowSampler([r.seed for r in requests], sampling, device) if sampling.temperature > 0 else None

        def pick(sequences, scores, rows):
            if penalty is not None:
                scores = penalty(sequences, scores)
            return sampler(scores, rows) if sampler is not None else scores.argmax(dim=-1)

        if sampling.stop not in self._stop_tokens:
            self._stop_tokens[sampling.stop] = _ending_tokens(self.tokenizer, sampling.stop)
        stop = _StopStrings(
            self.tokenizer, enc["input_ids"].shape[1], sampling.stop, self._stop_tokens[sampling.stop], cancel
        )
        eos = torch.tensor(sorted(self.eos_token_ids), device=device)

        def ended(sequences):
            return torch.isin(sequences[:, -1], eos) | stop(sequences)

        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                return decode(
                    self.model, enc["input_ids"], enc["attention_mask"], sampling.max_new_tokens, pick, ended, on_token
                )
        finally:
            self.model.train(was_training)


def decode(model, input_ids, attention_mask, max_new_tokens: int, pick, ended, on_token=None) -> list[list[int]]:
    """The new tokens of each row of a left-padded batch, up to and including the one that ended it, decoded with the
    model's key/value cache as ``model.generate`` decodes (the same positions and logits, token for token), except
    that a row leaves the batch, and its cache, when it ends. ``pick(sequences, scores, rows)`` gives the next token
    of each row still going, from its sequence so far and its float32 logits (``rows``: their indices in the batch);
    ``ended(sequences)`` says which of them are done once the token is appended. ``on_token(row, token)`` sees each
    token as it comes."""
    import torch

    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    out = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=True, logits_to_keep=1
    )
    cache, positions, mask, sequences = out.past_key_values, positions[:, -1:] + 1, attention_mask, input_ids
    rows = torch.arange(len(input_ids), device=input_ids.device)
    new: list[list[int]] = [[] for _ in range(len(input_ids))]
    for step in range(max_new_tokens):
        tokens = pick(sequences, out.logits[:, -1].float(), rows)
        sequences = torch.cat([sequences, tokens[:, None]], dim=1)
        for row, token in zip(rows.tolist(), tokens.tolist(), strict=True):
            new[row].append(token)
            if on_token is not None:
                on_token(row, token)
        going = ~ended(sequences)
        if step == max_new_tokens - 1 or not going.any():
            break
        if not going.all():
            keep = going.nonzero()[:, 0]
            cache.batch_select_indices(keep)
            rows, mask, sequences, positions = rows[keep], mask[keep], sequences[keep], positions[keep]
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
        out = model(input_ids=sequences[:, -1:], attention_mask=mask, position_ids=positions, past_key_values=cache)
        positions = positions + 1
    return new


def _ending_tokens(tokenizer, stop: tuple[str, ...]):
    """The ids of the tokens whose text holds the last character of a stop string: only a row that just produced one
    of them can have completed a stop string, so only those rows are decoded."""
    import torch

    last = {s[-1] for s in stop}
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return torch.tensor([i for i, token in enumerate(vocab) if token and last & set(token)], dtype=torch.long)


class _StopStrings:
    """Per-row stop once the generated text (not the prompt, which quotes the tags) holds a stop string; all rows
    stop when ``cancel`` is set."""

    def __init__(self, tokenizer, prompt_len: int, stop: tuple[str, ...], ending_ids, cancel=None):
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.stop = stop
        self.ending_ids = ending_ids
        self.cancel = cancel
        self.window = max(map(len, stop), default=0) + 2  # tokens: enough to hold a stop string however it splits

    def __call__(self, input_ids):
        import torch

        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if self.cancel is not None and self.cancel.is_set():
            return ~done
        if not self.stop or input_ids.shape[1] <= self.prompt_len:
            return done
        maybe = torch.isin(input_ids[:, -1], self.ending_ids.to(input_ids.device)).nonzero().flatten().tolist()
        if not maybe:
            return done
        start = max(self.prompt_len, input_ids.shape[1] - self.window)
        tails = self.tokenizer.batch_decode(input_ids[maybe, start:], skip_special_tokens=True)
        for row, tail in zip(maybe, tails, strict=True):
            done[row] = any(s in tail for s in self.stop)
        return done


class _PerRowSampler:
    """Temperature, top-k, min-p and top-p sampling with one seeded generator per row: a request samples the same
    tokens whichever batch it lands in and whenever the other rows end."""

    def __init__(self, seeds: list[int], sampling: Sampling, device):
        import torch

        self.sampling = sampling
        self.gen_device = device if device.type == "cuda" else torch.device("cpu")
        self.generators = [torch.Generator(device=self.gen_device).manual_seed(s) for s in seeds]

    def __call__(self, scores, rows):
        """The next token of each row still going (``rows``: their indices in the batch), from its float32 logits."""
        import torch

        s = self.sampling
        logits = scores.float() / s.temperature  # [batch, vocab]
        if s.top_k > 0:
            kth = torch.topk(logits, min(s.top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # [batch, 1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if s.min_p is not None:
            probs = logits.softmax(dim=-1)
            logits = logits.masked_fill(probs < s.min_p * probs.amax(dim=-1, keepdim=True), float("-inf"))
        if s.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
            remove = sorted_logits.softmax(dim=-1).cumsum(dim=-1) > s.top_p
            remove[:, 1:] = remove[:, :-1].clone()  # keep the token that crosses top_p
            remove[:, 0] = False
            logits = logits.masked_fill(remove.scatter(1, order, remove), float("-inf"))
        probs = logits.softmax(dim=-1).to(self.gen_device)
        generators = [self.generators[row] for row in rows.tolist()]
        picked = [torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators, strict=True)]
        return torch.cat(picked).to(scores.device)  # [rows]


# ---------------------------------------------------------------------------------------------------------------------
# vLLM


class VLLMEngine:
    """vLLM offline inference; per-request seeds make sampled results independent of batching."""

    name = "vllm"

    def __init__(self, model: str, dtype: str = "auto", seed: int = 0):
        from vllm import LLM

        self._merged = None
        if models.is_adapter(model):  # vLLM loads no adapter folder: it serves the merged model, from a temporary copy
            from reson.core.lora import save_merged

            self._merged = tempfile.TemporaryDirectory(prefix="reson-merged-")
            model = save_merged(model, Path(self._merged.name) / "model")
        self.llm = LLM(model=str(model), tokenizer=models.tokenizer_source(model), dtype=dtype, seed=seed)
        self.tokenizer = self.llm.get_tokenizer()

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def generate(self, requests: list[Request], sampling: Sampling) -> list[Generation]:
        from vllm import SamplingParams

        params = [
            SamplingParams(
                temperature=sampling.temperature,
                top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
                top_k=sampling.top_k if sampling.top_k > 0 else -1,
                min_p=sampling.min_p or 0.0,
                repetition_penalty=sampling.repetition_penalty,
                max_tokens=sampling.max_new_tokens,
                stop=list(sampling.stop),
                include_stop_str_in_output=True,
                seed=r.seed,
            )
            for r in requests
        ]
        outputs = self.llm.generate([r.prompt for r in requests], params, use_tqdm=False)
        choices = [output.outputs[0] for output in outputs]
        return [
            Generation(c.text, len(c.token_ids), "length" if c.finish_reason == "length" else "stop") for c in choices
        ]

    def stream(self, prompt: str, sampling: Sampling, seed: int = 0) -> Iterator[str | Generation]:
        [generation] = self.generate([Request(prompt, seed)], sampling)
        yield generation.text
        yield generation


# ---------------------------------------------------------------------------------------------------------------------
# MLX


def mlx_config_fixes(config: dict) -> dict:
    """Config entries mlx-lm needs that a transformers 5 config.json only holds under `rope_parameters`.

    transformers 5 saves RoPE settings as `rope_parameters: {rope_theta, rope_type, ...}`; mlx-lm 0.32's Qwen2 reads
    only a top-level `rope_theta` (default 1e6) and `rope_scaling`, so without these entries a model trained with
    rope_theta 1e4 (the tiny model, Qwen2.5-Math) would load with the wrong positions and generate garbage, silently.
    """
    rope = config.get("rope_parameters")
    if not isinstance(rope, dict) or "rope_theta" not in rope:
        return {}
    fixes = {}
    if "rope_theta" not in config:
        fixes["rope_theta"] = rope["rope_theta"]
    if rope.get("rope_type", "default") != "default" and not config.get("rope_scaling"):
        fixes["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
    return fixes


class MLXEngine:
    """An MLX model (plain or quantized) loaded with mlx-lm; tokens come from ``mlx_lm.generate.generate_step``.

    mlx-lm's own streaming detokenizer is not used: for byte-level BPE it drops the first token's leading space (the
    space after "Assistant:"), so its text would differ from what transformers decodes and from training.
    """

    name = "mlx"

    def __init__(self, model: str | Path):
        from mlx_lm.utils import load_config, load_model, load_tokenizer

        fixes = mlx_config_fixes(load_config(Path(model)))
        self.model, config = load_model(Path(model), model_config=fixes)
        self.tokenizer = load_tokenizer(models.tokenizer_dir(model), eos_token_ids=config.get("eos_token_id"))
        self.eos_token_ids = set(self.tokenizer.eos_token_ids)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(self.tokenizer.encode(text, add_special_tokens=False)) for text in texts]

    def generate(self, requests: list[Request], sampling: Sampling) -> list[Generation]:
        return [list(self.stream(r.prompt, sampling, r.seed))[-1] for r in requests]

    def stream(self, prompt: str, sampling: Sampling, seed: int = 0) -> Iterator[str | Generation]:
        import mlx.core as mx
        from mlx_lm.generate import generate_step, generation_stream, wired_limit
        from mlx_lm.sample_utils import make_repetition_penalty, make_sampler

        mx.random.seed(seed % 2**32)
        sampler = make_sampler(
            sampling.temperature, top_p=sampling.top_p, min_p=sampling.min_p or 0.0, top_k=sampling.top_k
        )
        penalties = (
            [make_repetition_penalty(sampling.repetition_penalty)] if sampling.repetition_penalty != 1.0 else []
        )
        steps = generate_step(
            mx.array(self.tokenizer.encode(prompt, add_special_tokens=False)),
            self.model,
            max_tokens=sampling.max_new_tokens,
            sampler=sampler,
            logits_processors=penalties,
        )
        with wired_limit(self.model, [generation_stream]), closing(steps):
            yield from decode_stream(self.tokenizer, (token for token, _ in steps), self.eos_token_ids, sampling)
