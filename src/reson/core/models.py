"""Model paths: what a ``--model_name_or_path`` names, checked from the files alone before anything loads.

One checker for every command, so training, evaluation, conversion and chat accept and refuse the same things:

- a local folder must hold ``config.json``, weights (``*.safetensors``, ``pytorch_model*.bin`` or their shard
  index) and a tokenizer, here or, for a TRL ``checkpoint-N`` saved without one, in the run folder above it;
- anything else must look like a hub id (``gpt2``, ``Qwen/Qwen2.5-3B``); a path-like string (``./x``, ``runs/x``
  where ``runs`` is a local folder) that does not exist is "no such folder", not a failed download.

``model_format`` tells a transformers folder from an MLX one (what ``mlx_lm.convert`` writes) by its files, and
``run_config`` reads the settings of the training run that wrote a model, so evaluating it can use the run's own
completion length and grading time limit.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import yaml

from reson.core import folders

# A Hugging Face Hub repo id: "name" or "namespace/name" (letters, digits, '-', '_', '.'; at most 96 characters each).
HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model.bin.index.json")


class ModelPathError(ValueError):
    """A model path that names nothing loadable; the message says what was given and what to change."""


def is_local(model: str) -> bool:
    """True when ``model`` is meant as a local path: it exists, starts like a path, or its first folder exists."""
    path = Path(model).expanduser()
    if path.exists() or model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model:
        return True
    head = model.split("/", 1)[0]
    return "/" in model and Path(head).is_dir()


def check_model(model: str | None, flag: str = "--model_name_or_path") -> str:
    """``"folder"`` or ``"hub"`` for a usable model path; ModelPathError (one line, naming ``flag``) otherwise."""
    if not model:
        raise ModelPathError(f"{flag} is missing: give a local model folder or a hub id (Qwen/Qwen2.5-3B).")
    model = str(model)
    if not is_local(model):
        if not HUB_ID.match(model):
            raise ModelPathError(f"{flag} {model!r} is neither a local folder nor a hub id (owner/name): fix it.")
        return "hub"
    path = Path(model).expanduser()
    if not path.exists():
        raise ModelPathError(f"{flag} {model}: no such folder; point it at a saved model, a run or a checkpoint.")
    if not path.is_dir():
        raise ModelPathError(f"{flag} {model} is a file: give the folder that holds config.json.")
    if not (path / "config.json").is_file():
        raise ModelPathError(
            f"{flag} {model} has no config.json: give a folder written by save_pretrained, reson train or convert."
        )
    if not any(next(path.glob(pattern), None) for pattern in WEIGHT_GLOBS):
        raise ModelPathError(
            f"{flag} {model} holds no weights (*.safetensors or pytorch_model*.bin): finish or redo "
            "the save, or point at another folder."
        )
    if tokenizer_dir(path) is None:
        raise ModelPathError(
            f"{flag} {model} has no tokenizer, nor has the folder above it: save the tokenizer beside the model "
            "(tokenizer.save_pretrained)."
        )
    return "folder"


def tokenizer_dir(path: str | Path) -> Path | None:
    """The folder with the model's tokenizer: the model folder, else (a TRL checkpoint) its run folder, else None."""
    path = Path(path).expanduser()
    for candidate in (path, path.resolve().parent):
        if any((candidate / name).is_file() for name in TOKENIZER_FILES):
            return candidate
    return None


def tokenizer_source(model: str) -> str:
    """What to pass to ``AutoTokenizer.from_pretrained`` for ``model``: its tokenizer folder, or the hub id."""
    folder = tokenizer_dir(model) if is_local(model) else None
    return str(folder) if folder is not None else str(model)


def load_tokenizer(model: str):
    """The model's transformers tokenizer (a checkpoint's comes from its run folder), with a pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source(model))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_format(path: str | Path) -> str:
    """``"mlx"`` for a folder written by mlx-lm (``reson convert``), ``"hf"`` for a transformers (torch) folder.

    MLX folders carry safetensors whose header says ``format: mlx``, and a ``quantization`` entry in config.json when
    quantized; a hub id is taken to be a transformers model.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        return "hf"
    config = json.loads((path / "config.json").read_text())
    if "quantization" in config:
        return "mlx"
    weights = sorted(path.glob("*.safetensors"))
    return "mlx" if weights and _safetensors_format(weights[0]) == "mlx" else "hf"


def _safetensors_format(path: Path) -> str | None:
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    return (header.get("__metadata__") or {}).get("format")


def run_config(model: str | Path) -> dict:
    """The resolved config of the ``reson train`` run that wrote ``model`` (the folder's own, or for a checkpoint its
    run folder's); empty for a hub id or a model no run of ours wrote."""
    if not is_local(str(model)):
        return {}
    path = Path(model).expanduser()
    for folder in (path, path.resolve().parent):
        file = folder / folders.RUN_CONFIG
        if file.is_file():
            try:
                values = yaml.safe_load(file.read_text())
            except yaml.YAMLError:
                return {}
            return values if isinstance(values, dict) else {}
    return {}


# ---------------------------------------------------------------------------------------------------------------------
# Shapes: what memory and disk depend on, known without loading any weight


@dataclass(frozen=True)
class Architecture:
    """The numbers of a Qwen2/Llama-style decoder that memory depends on (names as in a transformers config.json)."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    head_dim: int | None = None

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def kv_size(self) -> int:
        return self.num_key_value_heads * self.head_size

    @property
    def num_params(self) -> int:
        h, i, kv = self.hidden_size, self.intermediate_size, self.kv_size
        q_out = self.num_attention_heads * self.head_size
        attention = (h * q_out + q_out) + 2 * (h * kv + kv) + q_out * h  # q, k, v carry biases in Qwen2; o does not
        layer = attention + 3 * h * i + 2 * h  # SwiGLU MLP, two RMSNorm weights
        embeddings = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return embeddings + h + self.num_hidden_layers * layer


# From the config.json of each hub model (the Instruct and Math variants share the base's shape).
KNOWN_MODELS = {
    "Qwen/Qwen2.5-0.5B": Architecture(896, 24, 14, 2, 4864, 151936, True),
    "Qwen/Qwen2.5-1.5B": Architecture(1536, 28, 12, 2, 8960, 151936, True),
    "Qwen/Qwen2.5-3B": Architecture(2048, 36, 16, 2, 11008, 151936, True),
    "Qwen/Qwen2.5-7B": Architecture(3584, 28, 28, 4, 18944, 152064, False),
    "Qwen/Qwen2.5-Math-1.5B": Architecture(1536, 28, 12, 2, 8960, 151936, True),
    "Qwen/Qwen2.5-Math-7B": Architecture(3584, 28, 28, 4, 18944, 152064, False),
}


def architecture(model: str | None) -> Architecture | None:
    """The shape of a local model (its config.json) or of a known hub id (an -Instruct variant has its base's shape);
    None when neither tells it. ModelPathError for a config.json that lacks a decoder's sizes."""
    if not model:
        return None
    folder = Path(model).expanduser()
    if (folder / "config.json").is_file():
        config = json.loads((folder / "config.json").read_text())
        config = config.get("text_config", config)
        try:
            return Architecture(
                hidden_size=config["hidden_size"],
                num_hidden_layers=config["num_hidden_layers"],
                num_attention_heads=config["num_attention_heads"],
                num_key_value_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
                intermediate_size=config["intermediate_size"],
                vocab_size=config["vocab_size"],
                tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
                head_dim=config.get("head_dim"),
            )
        except KeyError as missing:
            raise ModelPathError(f"{model}: config.json lacks {missing}, which a decoder's shape needs.") from None
    key = str(model).lower().removesuffix("-instruct")
    return next((arch for name, arch in KNOWN_MODELS.items() if name.lower() == key), None)


def config_dtype(model: str) -> str | None:
    """The dtype a model's config.json records (``bfloat16`` for a known hub model); None when unknown."""
    file = Path(model).expanduser() / "config.json"
    if file.is_file():
        config = json.loads(file.read_text())
        config = config.get("text_config", config)
        return config.get("dtype") or config.get("torch_dtype")
    return "bfloat16" if architecture(model) is not None else None
