"""Model paths: what a ``--model_name_or_path`` names, checked from the files alone before anything loads.

One checker for every command, so training, evaluation, conversion and chat accept and refuse the same things:

- a local folder must hold ``config.json``, weights (``*.safetensors``, ``pytorch_model*.bin`` or their shard
  index) and a tokenizer, here or, for a TRL ``checkpoint-N`` saved without one, in the run folder above it;
- a LoRA run (or one of its checkpoints) holds an adapter instead: ``adapter_config.json``, whose
  ``base_model_name_or_path`` must itself pass these checks, its weights and a tokenizer;
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
ADAPTER_CONFIG = "adapter_config.json"  # what peft's save_pretrained writes beside a LoRA adapter's weights
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


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
    """``"folder"``, ``"adapter"`` (a LoRA adapter whose base passes too) or ``"hub"`` for a usable model path;
    ModelPathError (one line, naming ``flag``) otherwise."""
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
    if is_adapter(path):
        return _check_adapter(path, flag)
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


def _check_adapter(path: Path, flag: str) -> str:
    if not any((path / name).is_file() for name in ADAPTER_WEIGHTS):
        raise ModelPathError(
            f"{flag} {path} has {ADAPTER_CONFIG} but no adapter weights ({ADAPTER_WEIGHTS[0]}): finish or redo the "
            "save, or point at another folder."
        )
    if tokenizer_dir(path) is None:
        raise ModelPathError(f"{flag} {path} has no tokenizer, nor has the folder above it: save one beside it.")
    base = adapter_base(path)
    if base is None:
        raise ModelPathError(f"{flag} {path}: {ADAPTER_CONFIG} names no base_model_name_or_path: add the base's path.")
    if is_local(base) and is_adapter(Path(base).expanduser()):
        raise ModelPathError(f"{flag} {path}: its base {base} is itself an adapter: merge that one first.")
    try:
        check_model(base, f"{flag} {path}: its base model")
    except ModelPathError as error:
        raise ModelPathError(str(error)) from None
    return "adapter"


def is_adapter(path: str | Path) -> bool:
    """Whether ``path`` is a local folder holding a LoRA adapter (peft's ``adapter_config.json``)."""
    return (Path(path).expanduser() / ADAPTER_CONFIG).is_file()


def adapter_base(path: str | Path) -> str | None:
    """The base model a LoRA adapter folder was trained on: ``base_model_name_or_path`` of its adapter_config.json."""
    try:
        return json.loads((Path(path).expanduser() / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    except (OSError, ValueError):
        return None


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
    if not path.is_dir() or is_adapter(path):  # an adapter is a transformers (peft) folder
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

    @property
    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer in one decoder layer, by module name: what LoRA can target."""
        h, kv, i = self.hidden_size, self.kv_size, self.intermediate_size
        q = self.num_attention_heads * self.head_size
        shapes = ((h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h))
        return dict(zip(LINEAR_LAYERS, shapes, strict=True))

    def lora_params(self, targets, rank: int) -> int:
        """Trainable parameters of rank-``rank`` LoRA adapters on ``targets`` ("all-linear" or names of
        `linear_shapes`; a dotted name counts by its last part) in every layer: A is [r, in], B is [out, r]."""
        names = LINEAR_LAYERS if targets == "all-linear" else [t.rsplit(".", 1)[-1] for t in targets]
        shapes = self.linear_shapes
        return self.num_hidden_layers * sum(rank * sum(shapes[name]) for name in names)


# The linear layers of a decoder layer in the model families `Architecture` describes (config.json's model_type):
# what LoRA can target, and what peft's "all-linear" takes (it leaves the LM head out).
LINEAR_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DECODER_FAMILIES = ("qwen2", "qwen3", "llama", "mistral")


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
    if is_adapter(folder):
        return architecture(adapter_base(folder))
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


def linear_layers(model: str | None) -> tuple[str, ...] | None:
    """The names LoRA can target in ``model``'s decoder layers (`LINEAR_LAYERS` for the families `Architecture`
    describes, read from config.json or known by hub id); None when the files do not tell."""
    if not model:
        return None
    folder = Path(model).expanduser()
    if is_adapter(folder):
        return linear_layers(adapter_base(folder))
    if (folder / "config.json").is_file():
        config = json.loads((folder / "config.json").read_text())
        family = config.get("text_config", config).get("model_type")
        return LINEAR_LAYERS if family in DECODER_FAMILIES else None
    return LINEAR_LAYERS if not is_local(str(model)) and architecture(model) is not None else None


def config_dtype(model: str) -> str | None:
    """The dtype a model's config.json records (``bfloat16`` for a known hub model); None when unknown."""
    if is_adapter(Path(model).expanduser()):
        base = adapter_base(model)
        return config_dtype(base) if base else None
    file = Path(model).expanduser() / "config.json"
    if file.is_file():
        config = json.loads(file.read_text())
        config = config.get("text_config", config)
        return config.get("dtype") or config.get("torch_dtype")
    return "bfloat16" if architecture(model) is not None else None
