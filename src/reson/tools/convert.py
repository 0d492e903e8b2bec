"""Convert a trained model to MLX, optionally quantized, to chat with it on a Mac.

    reson convert --model_name_or_path runs/r1-zero-3b                   # -> runs/r1-zero-3b-mlx (float weights)
    reson convert --model_name_or_path runs/r1-zero-3b --quantize 4bit   # -> runs/r1-zero-3b-mlx-4bit
    reson chat --model_name_or_path runs/r1-zero-3b-mlx-4bit
    reson convert --model_name_or_path runs/r1-zero-3b-lora --merge_only  # -> runs/r1-zero-3b-lora-merged

The conversion is mlx-lm's own (`mlx_lm.convert`), so the folder it writes is an ordinary mlx-lm model. Around
it this command:

- takes a TRL `checkpoint-N` folder as well as a final model: when the checkpoint holds no tokenizer, the one
  in the run folder above it is used;
- takes a LoRA run (or checkpoint) as it takes a full one: the adapter is first merged into its base
  (`reson.core.lora.save_merged`: fp32 sums, rounded once to the base's dtype), which needs torch and peft, and
  the base model by the name the adapter records; `--merge_only` stops there and keeps that transformers folder
  (what vLLM or the hub take);
- refuses to overwrite an existing output unless `--overwrite`, and even then builds the new model in a temporary
  folder beside the output and swaps it in only once it is complete and checked, so a failed conversion
  never destroys the old one;
- gives the MLX folder a chat template that renders the training template (so mlx-lm's own `mlx_lm.chat` prompts
  the model as it was trained) and the run's train_config.yaml (so `reson chat` and `reson eval` use the run's
  template, completion length and grading limit);
- writes `rope_theta` at the top of config.json when transformers 5 saved it only under `rope_parameters`
  (mlx-lm 0.32's Qwen2 would otherwise fall back to its default of 1e6, silently);
- checks that the result loads and generates a few tokens, and prints its size next to the source's.

Quantization is mlx-lm's affine quantization (4 or 8 bits, groups of `--group_size` weights); layers whose
input size is not a multiple of the group size stay in full precision.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

from reson.core import folders, generation, lora, models
from reson.core.data import chat_template, format_prompt
from reson.core.help import HelpFormatter

QUANTIZE_BITS = {"4bit": 4, "8bit": 8}
CHECK_PROMPT = "What is 2 + 3?"
# Files a model needs besides its tokenizer; a checkpoint's optimizer and trainer state are left behind.
MODEL_FILES = ("config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reson convert",
        description="Convert a trained transformers model (or a TRL checkpoint folder) to MLX with mlx-lm.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--model_name_or_path", required=True, help="the trained model folder, or a checkpoint-N folder"
    )
    parser.add_argument(
        "--quantize",
        choices=sorted(QUANTIZE_BITS),
        default=None,
        help="quantize the weights (default: keep them as they are)",
    )
    parser.add_argument(
        "--group_size", type=int, default=64, choices=(32, 64, 128), help="weights per quantization group"
    )
    parser.add_argument(
        "--output_dir", default=None, help="the MLX folder to write (default: <model_name_or_path>-mlx[-4bit])"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument(
        "--merge_only",
        action="store_true",
        help="a LoRA run: write its adapter merged into the base as a transformers folder, and no MLX",
    )
    return parser


def default_output(model_path: Path, quantize: str | None, merge_only: bool = False) -> Path:
    suffix = "-merged" if merge_only else "-mlx" if quantize is None else f"-mlx-{quantize}"
    return model_path.parent / (model_path.name + suffix)


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def model_size(path: Path) -> int:
    """Bytes of weights in a model folder (safetensors or torch .bin files)."""
    return sum(f.stat().st_size for pattern in ("*.safetensors", "*.bin") for f in path.glob(pattern) if f.is_file())


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def stage_source(model_path: Path, tokenizer_path: Path, staging: Path) -> Path:
    """A folder with the model's files and its tokenizer's, linked, for a checkpoint whose tokenizer is elsewhere."""
    staging.mkdir(parents=True)
    for pattern in MODEL_FILES:
        for f in model_path.glob(pattern):
            (staging / f.name).symlink_to(f.resolve())
    for f in tokenizer_path.iterdir():
        if f.is_file() and not (staging / f.name).exists() and ("token" in f.name or f.suffix in (".jinja", ".txt")):
            (staging / f.name).symlink_to(f.resolve())
    return staging


def check_generates(mlx_path: Path) -> str:
    """Load the converted model and greedily generate a few tokens; returns the text."""
    engine = generation.MLXEngine(mlx_path)
    [result] = engine.generate(
        [generation.Request(format_prompt(CHECK_PROMPT))], generation.Sampling(max_new_tokens=8)
    )
    return result.text


def add_run_files(built: Path, model_path: Path) -> None:
    """The run's train_config.yaml, and a chat template that renders its training template."""
    run = models.run_config(model_path)
    if run:
        (built / folders.RUN_CONFIG).write_text(yaml.safe_dump(run, sort_keys=False, width=119))
    template = chat_template(run.get("template", "r1_zero"))
    if template is not None:
        (built / "chat_template.jinja").write_text(template)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    # Check the inputs, before anything loads
    model_path = Path(args.model_name_or_path.rstrip("/"))
    output = Path(args.output_dir) if args.output_dir else default_output(model_path, args.quantize, args.merge_only)
    try:
        kind = models.check_model(str(model_path))
        if kind == "hub":
            raise models.ModelPathError(f"--model_name_or_path {model_path}: convert a local folder (download first).")
        if models.model_format(model_path) == "mlx":
            raise models.ModelPathError(f"{model_path} is already an MLX model: chat with it directly (reson chat).")
        if args.merge_only and kind != "adapter":
            raise models.ModelPathError(f"--merge_only: {model_path} is a whole model, not a LoRA adapter to merge.")
        if kind == "adapter" and not all(importlib.util.find_spec(name) for name in ("torch", "peft")):
            raise generation.BackendError(
                f"{model_path} is a LoRA adapter: merging it into its base needs torch and peft (pip install "
                "'reson-llm[train]'), or run convert where the training ran."
            )
        if kind != "adapter" and not list(model_path.glob("*.safetensors")):
            raise models.ModelPathError(
                f"{model_path} holds only pytorch_model*.bin weights; mlx-lm reads safetensors: re-save it with "
                "model.save_pretrained(path) (safetensors is the default)."
            )
        if not args.merge_only and not generation.mlx_available():
            raise generation.BackendError(f"converting needs MLX, and {generation.MLX_MISSING}.")
        if output.resolve() == model_path.resolve():
            raise folders.FolderError("--output_dir must differ from --model_name_or_path.")
        if output.exists() and not args.overwrite:
            raise folders.FolderError(
                f"--output_dir {output} exists: pass --overwrite to replace it, or choose another."
            )
    except ValueError as e:  # ModelPathError, BackendError, FolderError
        print(f"reson convert: {e}", file=sys.stderr)
        return 2
    tokenizer_path = models.tokenizer_dir(model_path)

    # Convert into a temporary folder beside the output (same filesystem, so the final swap is a rename)
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        start = time.perf_counter()
        source = model_path
        if kind == "adapter":
            base = models.adapter_base(model_path)
            print(f"[reson] {model_path} is a LoRA adapter: merging it into {base}", file=sys.stderr)
            source = lora.save_merged(model_path, work / "merged")
        elif tokenizer_path != model_path:
            print(f"[reson] {model_path} holds no tokenizer; using the one in {tokenizer_path}", file=sys.stderr)
            source = stage_source(model_path, tokenizer_path, work / "source")
        if args.merge_only:
            built, sample = source, None
            add_run_files(built, model_path)
        else:
            built = work / "mlx"
            to_mlx(source, built, args.quantize, args.group_size)
            add_run_files(built, model_path)
            sample = check_generates(built)  # it loads and generates
        seconds = time.perf_counter() - start
    except KeyboardInterrupt:
        shutil.rmtree(work, ignore_errors=True)
        raise
    except Exception as e:
        shutil.rmtree(work, ignore_errors=True)
        kept = f"; {output} is left as it was" if output.exists() else ""
        print(f"reson convert: converting {model_path} failed ({type(e).__name__}: {e}){kept}.", file=sys.stderr)
        return 1
    try:
        # Swap it in: the old output (with --force) is removed only now that the new one is complete
        old = work / "old"
        if output.exists():
            output.rename(old)
        try:
            built.rename(output)
        except OSError:
            if old.exists():
                old.rename(output)
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)

    what = "merged model (transformers)" if args.merge_only else f"MLX model ({args.quantize or 'unquantized'})"
    origin = "LoRA adapter" if kind == "adapter" else "source"
    print(
        f"{what} written to {output}: weights {_megabytes(model_size(output))} ({origin} "
        f"{_megabytes(model_size(model_path))}), folder {_megabytes(folder_size(output))}, in {seconds:.1f}s."
    )
    if sample is not None:
        print(f"It loads and generates: {sample!r}")
    print(f"Chat with it: reson chat --model_name_or_path {output}")
    return 0


def to_mlx(source: Path, built: Path, quantize: str | None, group_size: int) -> None:
    """mlx-lm's conversion of a transformers folder, with the RoPE entries mlx-lm reads written out, so the folder
    also works with mlx-lm's own tools."""
    from mlx_lm import convert

    bits = QUANTIZE_BITS.get(quantize)
    convert(
        str(source),
        mlx_path=str(built),
        quantize=bits is not None,
        q_bits=bits,
        q_group_size=group_size if bits is not None else None,
    )
    config_file = built / "config.json"
    config = json.loads(config_file.read_text())
    config.update(generation.mlx_config_fixes(config))
    config_file.write_text(json.dumps(config, indent=4, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(main())
