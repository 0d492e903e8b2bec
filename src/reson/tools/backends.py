"""Model folders and streaming inference for `reson chat` and `reson convert`: MLX (mlx-lm) or transformers.

- **Two kinds of model folder.** A transformers folder holds safetensors written by torch (header format "pt")
  or `pytorch_model*.bin`; an MLX folder is what mlx-lm (and so `reson convert`) writes: safetensors whose
  header format is "mlx", plus a `quantization` entry in `config.json` when quantized. `model_format` tells
  them apart from the files alone, before any weights load, so a wrong pairing fails with a one-line error.
- **Checkpoints.** A TRL `checkpoint-N` folder may hold the weights but no tokenizer; `tokenizer_dir` then
  takes the tokenizer from the run folder above it.
- **Backends.** `MLXBackend` draws tokens from mlx-lm's `generate_step` (with its `make_sampler`);
  `HFBackend` from a KV-cached decoding loop in torch. Both encode the prompt without added special tokens and
  decode with the model's transformers tokenizer (as training and evaluation do), take the argmax at
  temperature 0, sample from softmax(logits / temperature) otherwise (no top-p or top-k), and stop at EOS.
  `generate` adds the stop at `</answer>` and returns a `Completion`.

Nothing here imports torch, transformers or mlx at import time, and the MLX path never imports torch or trl
itself (transformers, which mlx-lm uses for tokenizers, imports torch only where torch is installed).
"""

from __future__ import annotations

import importlib.util
import json
import struct
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from reson.core.generation import STOP_STRING

BACKENDS = ("auto", "mlx", "hf")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
MLX_MISSING = (
    "the MLX backend needs mlx and mlx-lm: on a Mac `pip install -r requirements-mac.txt`, on Linux "
    "`pip install 'reson-llm[mlx]'` (CPU wheels); or use --backend hf."
)
HF_MISSING = (
    "the transformers backend needs torch and transformers: `pip install 'reson-llm[train]'`, or convert the "
    "model to MLX with `reson convert` (mlx-lm reads transformers folders without torch)."
)


class ModelFolderError(ValueError):
    """A model folder that is missing, incomplete, or of the wrong kind for what was asked of it."""


def _safetensors_format(path: Path) -> str | None:
    """The `format` entry of a safetensors file's header metadata ("pt", "mlx", ...), None when absent."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return (header.get("__metadata__") or {}).get("format")


def model_format(path: str | Path) -> str:
    """ "mlx" for a folder written by mlx-lm, "hf" for a transformers (torch) folder; raises ModelFolderError."""
    path = Path(path)
    if not path.exists():
        raise ModelFolderError(f"model folder {path} does not exist: check --model_path.")
    if not path.is_dir():
        raise ModelFolderError(f"--model_path {path} is a file: give the folder that holds config.json.")
    if not (path / "config.json").is_file():
        raise ModelFolderError(
            f"{path} has no config.json: give a folder written by save_pretrained, `reson train` or `reson convert`."
        )
    config = json.loads((path / "config.json").read_text())
    if "quantization" in config:
        return "mlx"
    weights = sorted(path.glob("*.safetensors"))
    if weights:
        return "mlx" if _safetensors_format(weights[0]) == "mlx" else "hf"
    if any(path.glob("pytorch_model*.bin")):
        return "hf"
    raise ModelFolderError(f"{path} holds no model weights (*.safetensors or pytorch_model*.bin).")


def _has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in TOKENIZER_FILES)


def tokenizer_dir(path: str | Path) -> Path:
    """The folder holding the model's tokenizer: the model folder, else (a TRL checkpoint) its run folder."""
    path = Path(path)
    for candidate in (path, path.resolve().parent):
        if _has_tokenizer(candidate):
            return candidate
    raise ModelFolderError(
        f"no tokenizer in {path} or its parent folder: save the tokenizer beside the model "
        "(tokenizer.save_pretrained) or point at the run folder."
    )


def mlx_available() -> bool:
    """Whether mlx (with a working backend: Metal on a Mac, `mlx[cpu]` on Linux) and mlx-lm import."""
    if importlib.util.find_spec("mlx_lm") is None:
        return False
    try:
        import mlx.core  # noqa: F401
    except ImportError:
        return False
    return True


def hf_available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers"))


def resolve_backend(backend: str, model_path: str | Path) -> str:
    """The backend to use for `model_path`: "auto" follows the folder's format; explicit choices are checked."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}.")
    if backend == "mlx" and not mlx_available():
        raise ModelFolderError(MLX_MISSING)
    fmt = model_format(model_path)
    if backend == "auto":
        backend = fmt
        if backend == "mlx" and not mlx_available():
            raise ModelFolderError(f"{model_path} is an MLX model, and {MLX_MISSING}")
    if backend == "mlx" and fmt == "hf":
        raise ModelFolderError(
            f"{model_path} is a transformers (torch) model: convert it first with "
            f"`reson convert --model_path {model_path}`, or use --backend hf."
        )
    if backend == "hf" and fmt == "mlx":
        raise ModelFolderError(
            f"{model_path} is an MLX model (written by mlx-lm or `reson convert`), which transformers cannot load: "
            "use --backend mlx, or point at the original transformers folder."
        )
    if backend == "hf" and not hf_available():
        raise ModelFolderError(f"{model_path} is a transformers model, and {HF_MISSING}")
    return backend


def mlx_config_fixes(config: dict) -> dict:
    """Config entries mlx-lm needs that a transformers 5 config.json only holds under `rope_parameters`.

    transformers 5 saves RoPE settings as `rope_parameters: {rope_theta, rope_type, ...}`; mlx-lm 0.32's Qwen2
    (and other older architectures) read only a top-level `rope_theta` (default 1e6) and `rope_scaling`, so
    without these entries a model trained with rope_theta 1e4 (the tiny model, Qwen2.5-Math) would load with the
    wrong positions and generate garbage, silently.
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


@dataclass
class Completion:
    text: str = ""
    num_tokens: int = 0  # generated tokens, EOS excluded
    finish_reason: str = "length"  # "stop": EOS or `</answer>`; "length": ran out of max_tokens

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


def decode_stream(tokenizer, tokens: Iterator[int], eos_token_ids, max_tokens: int) -> Iterator[tuple]:
    """Turn generated token ids into text pieces: yields (piece, tokens so far, finish reason or None).

    Both backends decode with the model's transformers tokenizer, as training and evaluation do, so the same
    tokens give the same text on either. The finish reason is "stop" at EOS (not counted, not decoded) and
    "length" on the `max_tokens`-th token. A piece is held back while it ends inside a multi-byte character.
    """
    ids: list[int] = []
    shown = ""
    for token in tokens:
        if token in eos_token_ids:
            yield "", len(ids), "stop"
            return
        ids.append(token)
        last = len(ids) >= max_tokens
        text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if text.endswith("\ufffd") and not last:
            yield "", len(ids), None
        else:
            yield text[len(shown) :], len(ids), "length" if last else None
            shown = text
        if last:
            return


class MLXBackend:
    """An MLX model and its tokenizer, loaded with mlx-lm; tokens come from `mlx_lm.generate.generate_step`.

    mlx-lm's own streaming detokenizer is not used: for byte-level BPE it drops the first token's leading space
    (the space after "Assistant:") and mis-decodes the byte 0, so its text would differ from what transformers
    decodes and from what the model saw in training (and a conversation's history would drift).
    """

    name = "mlx"

    def __init__(self, model_path: str | Path):
        from mlx_lm.utils import load_config, load_model, load_tokenizer

        fixes = mlx_config_fixes(load_config(Path(model_path)))
        self.model, config = load_model(Path(model_path), model_config=fixes)
        self.tokenizer = load_tokenizer(tokenizer_dir(model_path), eos_token_ids=config.get("eos_token_id"))
        self.eos_token_ids = set(self.tokenizer.eos_token_ids)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def stream(self, prompt_ids: list[int], max_tokens: int, temperature: float, seed: int) -> Iterator[tuple]:
        """Yields (text piece, tokens so far, finish reason or None), one step per generated token."""
        import mlx.core as mx
        from mlx_lm.generate import generate_step, generation_stream, wired_limit
        from mlx_lm.sample_utils import make_sampler

        mx.random.seed(seed)
        steps = generate_step(
            mx.array(prompt_ids), self.model, max_tokens=max_tokens, sampler=make_sampler(temperature)
        )
        with wired_limit(self.model, [generation_stream]), closing(steps):
            tokens = (token for token, _ in steps)
            yield from decode_stream(self.tokenizer, tokens, self.eos_token_ids, max_tokens)


class HFBackend:
    """A transformers model on the best local device, decoded one token at a time with a KV cache."""

    name = "hf"

    def __init__(self, model_path: str | Path):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir(model_path))
        device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        self.device = torch.device(device)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(self.device).eval()
        eos = self.model.generation_config.eos_token_id
        self.eos_token_ids = {eos} if isinstance(eos, int) else set(eos or [])
        if self.tokenizer.eos_token_id is not None:
            self.eos_token_ids.add(self.tokenizer.eos_token_id)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _tokens(self, prompt_ids: list[int], temperature: float, seed: int) -> Iterator[int]:
        import torch

        generator = torch.Generator().manual_seed(seed)
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([prompt_ids], device=self.device), use_cache=True)
            while True:
                logits = out.logits[0, -1].float().cpu()  # [vocab]
                if temperature > 0:
                    token = int(torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator))
                else:
                    token = int(logits.argmax())
                yield token
                next_ids = torch.tensor([[token]], device=self.device)  # [1, 1]
                out = self.model(input_ids=next_ids, past_key_values=out.past_key_values, use_cache=True)

    def stream(self, prompt_ids: list[int], max_tokens: int, temperature: float, seed: int) -> Iterator[tuple]:
        """Yields (text piece, tokens so far, finish reason or None), one step per generated token."""
        with closing(self._tokens(prompt_ids, temperature, seed)) as tokens:
            yield from decode_stream(self.tokenizer, tokens, self.eos_token_ids, max_tokens)


def load_backend(backend: str, model_path: str | Path):
    """A loaded backend ("mlx" or "hf", already resolved) for `model_path`."""
    if backend == "mlx":
        return MLXBackend(model_path)
    if backend == "hf":
        return HFBackend(model_path)
    raise ValueError(f"unknown backend {backend!r}: choose mlx or hf.")


def generate(
    backend,
    prompt: str,
    max_tokens: int = 512,
    temperature: float = 0.0,
    seed: int = 0,
    on_text: Callable[[str], None] | None = None,
) -> Completion:
    """Generate a completion of `prompt`, calling `on_text` with each new piece of text as it comes.

    Stops at EOS, at the end of `</answer>` (the completion keeps the tag), or after `max_tokens` tokens.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}.")
    completion = Completion()
    with closing(backend.stream(backend.encode(prompt), max_tokens, temperature, seed)) as steps:
        for piece, num_tokens, finish in steps:
            completion.num_tokens = num_tokens
            before = len(completion.text)
            completion.text += piece
            cut = completion.text.find(STOP_STRING, max(0, before - len(STOP_STRING)))
            if cut >= 0:
                completion.text = completion.text[: cut + len(STOP_STRING)]
                piece = completion.text[before:]
                finish = "stop"
            if piece and on_text is not None:
                on_text(piece)
            if finish is not None:
                completion.finish_reason = finish
                break
    return completion
