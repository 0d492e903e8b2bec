"""`reson eval`: evaluate any model (hub id, local folder, training checkpoint, MLX folder) on GSM8K, MATH and friends.

    reson eval --model_name_or_path Qwen/Qwen2.5-3B --datasets gsm8k math500 --output_dir runs/eval/base
    reson eval --model_name_or_path runs/grpo/checkpoint-1000 --datasets ../shared/data/gsm8k/test.jsonl \\
        --num_problems 200 --output_dir runs/eval/grpo
    reson eval --model_name_or_path runs/grpo-mlx-4bit --backend mlx --datasets gsm8k --output_dir runs/eval/4bit
    reson compare runs/eval/base runs/eval/grpo          # the "Baseline vs After GRPO" table

Prompts, answer parsing, scoring and generation are the training code's own (`reson.core.data`, `reson.core.rewards`,
`reson.core.metrics`, `reson.core.generation`), so evaluation and training cannot disagree about what a correct,
well-formatted answer is.

What it writes to `--output_dir` (`reson.evaluation.store` keeps the folder):
- `samples.jsonl`: one line per completion (dataset, id, sample index, prompt, completion, extracted answer, gold,
  each score, token counts), appended and fsynced batch by batch. Run the same command again after Ctrl-C or a crash
  and it resumes: finished samples are kept; a line cut short, or damaged, is skipped, counted and generated again.
- `run.json`: the settings the folder belongs to; another model or other settings in the same folder is an error.
- `results.json`: the summary (per dataset metrics, sample ids, settings, package versions). A folder with a finished
  `results.json` is not evaluated again unless `--overwrite`.
The folder is locked while an evaluation runs: a second one into it stops with one line naming the first.

Choices worth knowing:
- The evaluation of a model `reson train` wrote uses that run's `max_completion_length` and `reward_timeout`, so it
  neither truncates what training allowed nor grades differently; any other model gets 1536 tokens and the scoring
  default. Either can be set.
- Greedy decoding by default (`--temperature 0`). Sampling seeds each completion from (seed, dataset, problem id,
  sample index), so a sample does not depend on batching or on resuming.
- Batches are cut once from the whole work list (longest prompts first), so a resumed run with the same
  `--batch_size` generates exactly the batches an uninterrupted run would, and ends with the same results.
- Metrics are `reson.core.metrics.summarize`'s (accuracy over gradable answers, format compliance, think usage,
  self-correction overall, among thinking completions and among correct answers) plus truncation, completion length
  and `ungraded` (answers whose gold could not be parsed).
- With `--num_generations` > 1, `accuracy` is the mean over all samples (the pass@1 estimate); `pass@k` is the
  unbiased estimator of Chen et al. (2021); `maj@k` is the expected majority-vote accuracy over random k-subsets of
  the n samples (answers grouped by the same equivalence check as scoring, ties split evenly).
- A completion is truncated when it reached `--max_completion_length` without EOS or `</answer>`.

From Python: `evaluate(model_name_or_path, datasets, output_dir, **settings) -> dict` (what results.json holds).
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from collections import defaultdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from reson.core import data, folders, generation, models
from reson.core.data import DATASET_NAMES, TEMPLATES, with_prompts
from reson.core.help import HelpFormatter
from reson.core.jsonl import append_jsonl
from reson.core.metrics import (
    SEARCH_FIELDS,
    completion_record,
    default_ks,
    group_answers,
    maj_at_k,
    pass_at_k,
    summarize,
)
from reson.core.preemption import EXIT_CODES, Interrupted, stop_requests
from reson.core.rewards import DEFAULT_TIMEOUT, score, score_rows
from reson.evaluation import store

logger = logging.getLogger(__name__)

TEMPLATE_NAMES = (*TEMPLATES, "chat")
# completions per batch, written to samples.jsonl together: the unit of resuming (and the hf backend's generate)
BATCH_SIZES = {"hf": generation.HF_BATCH_SIZE, "vllm": 512, "mlx": 8}


class EvalError(ValueError):
    """Bad input to `reson eval`, found before any model loads."""


def _score_equivalent(timeout: float):
    """Answer equivalence by the scoring code itself: `a` graded against `b` as if `b` were the gold answer."""

    def equivalent(candidate: str, references: list[str]) -> list[bool]:
        scores = score([f"<answer>{candidate}</answer>"] * len(references), list(references), timeout=timeout)
        return [s.accuracy == 1.0 for s in scores]

    return equivalent


# ---------------------------------------------------------------------------------------------------------
# metrics per dataset
# ---------------------------------------------------------------------------------------------------------


def _is_correct(record: dict) -> bool:
    return record.get("accuracy") == 1.0


def dataset_metrics(records: list[dict], n: int = 1, equivalent=None) -> dict:
    """Metrics for one dataset's sample records (each carries the fields `evaluate` writes to samples.jsonl).

    `equivalent` groups answers for maj@k (defaults to the scoring code); only used when n > 1.
    """
    if not records:
        return {"count": 0}
    metrics = dict(summarize(records))  # accuracy over graded records, format, think usage, self-correction
    metrics["ungraded"] = sum(r["accuracy"] is None for r in records)  # gold answer that could not be parsed
    metrics["truncation_rate"] = sum(bool(r["truncated"]) for r in records) / len(records)
    metrics["avg_completion_tokens"] = sum(r["num_tokens"] for r in records) / len(records)
    metrics["count"] = len(records)
    by_problem: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_problem[str(r["id"])].append(r)
    metrics["num_problems"] = len(by_problem)
    if n > 1:
        equivalent = equivalent or _score_equivalent(DEFAULT_TIMEOUT)
        ks = default_ks(n)
        passes = {k: 0.0 for k in ks}
        majs = {k: 0.0 for k in ks}
        for samples in by_problem.values():
            if len(samples) != n:
                raise ValueError(f"problem {samples[0]['id']} has {len(samples)} samples, expected {n}")
            samples = sorted(samples, key=lambda r: r["sample_index"])
            c = sum(_is_correct(r) for r in samples)
            groups = group_answers([r.get("extracted") for r in samples], equivalent)
            counts: dict[int, int] = defaultdict(int)
            right: dict[int, bool] = {}
            for g, r in zip(groups, samples, strict=True):
                if g is not None:
                    counts[g] += 1
                    right[g] = right.get(g, False) or _is_correct(r)
            order = sorted(counts)
            for k in ks:
                passes[k] += pass_at_k(n, c, k)
                majs[k] += maj_at_k([counts[g] for g in order], [right[g] for g in order], n, k)
        for k in ks:
            metrics[f"pass@{k}"] = passes[k] / len(by_problem)
        for k in ks:
            metrics[f"maj@{k}"] = majs[k] / len(by_problem)
    return metrics


def breakdown(records: list[dict], field: str) -> dict:
    """Accuracy and count per value of `field` (MATH's level or subject); empty when no record has it."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if r.get(field) is not None:
            groups[str(r[field])].append(r)
    return {
        key: {"accuracy": sum(_is_correct(r) for r in rs) / len(rs), "count": len(rs)}
        for key, rs in sorted(groups.items())
    }


# ---------------------------------------------------------------------------------------------------------
# settings, datasets, output folder
# ---------------------------------------------------------------------------------------------------------


def load_datasets(
    specs: list[str], split: str, num_problems: int | None, seed: int, data_dir: str | None
) -> dict[str, tuple[str, list[dict]]]:
    """label -> (source, rows), each set cut to a seeded, stable subset of `num_problems` problems.

    The label is the dataset's name; for a file, the name `reson.core.data` gives it (gsm8k for .../gsm8k/test.jsonl,
    else the file's stem), so a run on a name and a run on its local file line up in `reson compare`.
    """
    datasets: dict[str, tuple[str, list[dict]]] = {}
    for spec in specs:
        try:
            is_file = data.check_dataset(spec, split) == "file"
            rows = data.load_problems(spec, split=split, data_dir=data_dir)
        except (ValueError, FileNotFoundError, ImportError) as err:
            raise EvalError(f"--datasets {spec}: {err}") from err
        label = rows[0]["source"] if is_file else spec
        if label in datasets:
            raise EvalError(f"--datasets {spec}: {label} is given twice.")
        if num_problems is not None:
            if num_problems > len(rows):
                raise EvalError(
                    f"--num_problems {num_problems}: {label} ({split}) has only {len(rows)} problems; ask for fewer."
                )
            rows = data.sample_rows(rows, num_problems, seed=seed)
        ids = [str(r["id"]) for r in rows]
        if len(set(ids)) != len(ids):
            raise EvalError(f"--datasets {spec}: problem ids are not unique; cannot resume or report per problem.")
        datasets[label] = (str(Path(spec).expanduser().resolve()) if is_file else spec, rows)
    return datasets


def package_versions(backend: str) -> dict:
    names = ["reson-llm", "torch", "transformers", "math-verify"] + {"vllm": ["vllm"], "mlx": ["mlx", "mlx-lm"]}.get(
        backend, []
    )
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


# ---------------------------------------------------------------------------------------------------------
# the evaluation
# ---------------------------------------------------------------------------------------------------------


def evaluate(
    model_name_or_path: str,
    datasets: list[str] | str,
    output_dir: str | Path,
    *,
    split: str = "test",
    num_problems: int | None = None,
    template: str = "r1_zero",
    backend: str = "auto",
    batch_size: int | None = None,
    temperature: float = 0.0,
    top_p: float = 1.0,
    num_generations: int = 1,
    max_completion_length: int | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    overwrite: bool = False,
    dtype: str = "auto",
    device: str = "auto",
    reward_timeout: float | None = None,
    progress: bool = True,
) -> dict:
    """Evaluate `model_name_or_path` on `datasets` and write samples.jsonl and results.json to `output_dir`.

    Returns the results summary (what results.json holds). Resumes an interrupted run in the same folder; returns the
    stored summary of a finished one unless `overwrite`. Raises `EvalError` on bad input before any model loads.
    `max_completion_length` and `reward_timeout` default to the values of the run that wrote the model.
    """
    # ---- check the settings ------------------------------------------------------------------------------
    specs = [datasets] if isinstance(datasets, str) else list(datasets)
    if not specs:
        raise EvalError("--datasets: give at least one dataset name or file.")
    if template not in TEMPLATE_NAMES:
        raise EvalError(f"--template {template}: unknown; choose one of {', '.join(TEMPLATE_NAMES)}.")
    if num_problems is not None and num_problems < 1:
        raise EvalError(f"--num_problems {num_problems}: must be at least 1 (or leave it out for the whole set).")
    if temperature < 0 or not 0 < top_p <= 1:
        raise EvalError("--temperature must be >= 0 and --top_p in (0, 1].")
    if num_generations > 1 and temperature == 0:
        raise EvalError(
            f"--num_generations {num_generations} with greedy decoding gives identical answers; set --temperature."
        )
    try:
        models.check_model(model_name_or_path)
        backend = generation.resolve_backend(backend, model_name_or_path)
    except (models.ModelPathError, generation.BackendError) as err:
        raise EvalError(str(err)) from None
    run_settings = models.run_config(model_name_or_path)
    if max_completion_length is None:
        max_completion_length = run_settings.get("max_completion_length", generation.DEFAULT_MAX_COMPLETION_LENGTH)
    if reward_timeout is None:
        reward_timeout = run_settings.get("reward_timeout", DEFAULT_TIMEOUT)
    for flag, value in (
        ("--num_generations", num_generations),
        ("--max_completion_length", max_completion_length),
        ("--batch_size", batch_size or 1),
        ("--reward_timeout", reward_timeout),
    ):
        if not value > 0:
            raise EvalError(f"{flag} {value}: must be positive.")

    # ---- data --------------------------------------------------------------------------------------------
    loaded = load_datasets(specs, split, num_problems, seed, data_dir)
    rows_by_label = {label: rows for label, (_, rows) in loaded.items()}
    model_id = str(Path(model_name_or_path).resolve()) if models.is_local(model_name_or_path) else model_name_or_path
    run = {
        "model": model_id,
        "datasets": {label: source for label, (source, _) in loaded.items()},
        "split": split,
        "num_problems": num_problems,
        "seed": seed,
        "template": template,
        "backend": backend,
        "temperature": temperature,
        "top_p": top_p,
        "num_generations": num_generations,
        "max_completion_length": max_completion_length,
    }

    # ---- output folder: locked, then finished, resumable or new --------------------------------------------
    output_dir = Path(output_dir)
    try:
        lock = folders.claim(output_dir, folders.EVALUATION, "--output_dir", resume=True, overwrite=overwrite)
    except folders.FolderError as err:
        raise EvalError(str(err)) from None
    try:
        try:
            finished = store.prepare(output_dir, run)
        except folders.FolderError as err:
            raise EvalError(str(err)) from None
        if finished is not None:
            logger.info("%s already holds finished results; pass --overwrite to evaluate again", output_dir)
            return finished
        return _run(
            run,
            rows_by_label,
            output_dir,
            backend,
            model_name_or_path,
            batch_size,
            dtype,
            device,
            reward_timeout,
            progress,
        )
    finally:
        lock.release()


def _run(run, rows_by_label, output_dir, backend, model, batch_size, dtype, device, reward_timeout, progress) -> dict:
    samples_file = output_dir / folders.SAMPLES_FILE
    done = {(r["dataset"], str(r["id"]), r["sample_index"]): r for r in store.read_samples(samples_file)}
    n, seed = run["num_generations"], run["seed"]

    # ---- tokenizer and prompts ---------------------------------------------------------------------------
    try:
        tokenizer = models.load_tokenizer(model)
        for label in rows_by_label:
            rows_by_label[label] = with_prompts(rows_by_label[label], template=run["template"], tokenizer=tokenizer)
    except (OSError, ValueError) as err:  # not on the hub, offline, or a template the tokenizer lacks
        raise EvalError(f"--model_name_or_path {model}: {' '.join(str(err).split())[:300]}") from None

    # ---- the work: every (problem, sample index), longest prompts first, cut into fixed batches ----------
    items = [(label, row, k) for label, rows in rows_by_label.items() for row in rows for k in range(n)]
    lengths = [len(ids) for ids in tokenizer([it[1]["prompt"] for it in items], add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(items)), key=lambda i: -lengths[i])
    batch_size = batch_size or BATCH_SIZES[backend]
    batches = [[items[i] for i in order[j : j + batch_size]] for j in range(0, len(order), batch_size)]
    pending = [[it for it in b if (it[0], str(it[1]["id"]), it[2]) not in done] for b in batches]
    pending = [b for b in pending if b]
    todo = sum(map(len, pending))
    if done:
        logger.info("resuming: %d samples done, %d to go", len(done), todo)

    # ---- model and generation ----------------------------------------------------------------------------
    sampling = generation.Sampling(
        max_new_tokens=run["max_completion_length"], temperature=run["temperature"], top_p=run["top_p"]
    )
    elapsed = 0.0
    if todo:
        from tqdm.auto import tqdm

        engine = generation.load_engine(backend, model, dtype=dtype, device=device, seed=seed, batch_size=batch_size)
        started = time.time()  # throughput counts generating and scoring, not loading the model
        bar = tqdm(total=todo, unit="sample", desc="eval", disable=not progress, dynamic_ncols=True)
        for batch in pending:
            requests = [
                generation.Request(row["prompt"], generation.sample_seed(seed, label, row["id"], k))
                for label, row, k in batch
            ]
            records = _score_batch(batch, engine.generate(requests, sampling), tokenizer, reward_timeout)
            append_jsonl(samples_file, records)
            done.update({(r["dataset"], str(r["id"]), r["sample_index"]): r for r in records})
            bar.update(len(batch))
        bar.close()
        elapsed = time.time() - started

    # ---- summarize ---------------------------------------------------------------------------------------
    equivalent = _score_equivalent(reward_timeout)
    results = {
        **{key: run[key] for key in ("model", "backend", "template", "split", "seed", "num_problems")},
        "model_name_or_path": str(model),
        "generation": {
            **{key: run[key] for key in ("temperature", "top_p", "num_generations", "max_completion_length")},
            "batch_size": batch_size,
            "stop": ["EOS", *sampling.stop],
        },
        "reward_timeout": reward_timeout,
        "versions": package_versions(backend),
        "datasets": {},
        "throughput": {
            "samples_generated": todo,
            "seconds": round(elapsed, 3),
            "samples_per_s": todo / elapsed if todo and elapsed else None,
        },
    }
    for label, rows in rows_by_label.items():
        records = [done[(label, str(row["id"]), k)] for row in rows for k in range(n)]
        results["datasets"][label] = {
            "source": run["datasets"][label],
            "ids": [str(row["id"]) for row in rows],
            "metrics": dataset_metrics(records, n=n, equivalent=equivalent),
            "by_level": breakdown(records, "level"),
            "by_subject": breakdown(records, "subject"),
        }
    folders.write_json(output_dir / folders.RESULTS_FILE, results)
    return results


def _score_batch(batch, outputs, tokenizer, reward_timeout: float) -> list[dict]:
    """Sample records for one generated batch: scores and emergence metrics from the training code."""
    prompts = [row["prompt"] for _, row, _ in batch]
    scores = score_rows([o.text for o in outputs], [row for _, row, _ in batch], prompts, timeout=reward_timeout)
    records = []
    for (label, row, k), out, prompt, s in zip(batch, outputs, prompts, scores, strict=True):
        emergence = completion_record(out.text, prompt, s, tokenizer)
        record = {
            "dataset": label,
            "id": str(row["id"]),
            "sample_index": k,
            "prompt": prompt,
            "completion": out.text,
            "extracted": s.extracted,
            "gold": str(row["answer"]),
            "accuracy": s.accuracy,
            "format": s.format,
            "think_used": emergence["think_used"],
            "think_tokens": emergence["think_tokens"],
            "self_correction": emergence["self_correction"],
            "num_tokens": out.num_tokens,
            "truncated": out.truncated,
        }
        for field in ("level", "subject", "nums", "target"):  # MATH's breakdowns; Countdown's row, to rescore it
            if row.get(field) is not None:
                record[field] = row[field]
        record.update((key, emergence[key]) for key in SEARCH_FIELDS if key in emergence)
        records.append(record)
    return records


# ---------------------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reson eval",
        description="Evaluate a model on GSM8K, MATH and friends: accuracy, format, think usage, self-correction, "
        "truncation, pass@k and maj@k. Resumable: run the same command again after an interruption.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--model_name_or_path", required=True, help="hub id, local model folder, training checkpoint or MLX folder"
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["gsm8k"],
        help=f"names ({', '.join(DATASET_NAMES)}), hub ids, or .jsonl/.parquet files in GSM8K or MATH form",
    )
    parser.add_argument("--output_dir", required=True, help="folder for samples.jsonl, run.json and results.json")
    parser.add_argument("--split", default="test", help="dataset split for names (files are used whole)")
    parser.add_argument("--data_dir", default=None, help="local folder laid out like shared/data, for offline names")
    parser.add_argument("--num_problems", type=int, default=None, help="a seeded, stable subset of N problems per set")
    parser.add_argument("--template", default="r1_zero", choices=TEMPLATE_NAMES, help="prompt template")
    parser.add_argument(
        "--backend",
        default="auto",
        choices=(*generation.BACKENDS, *generation.ALIASES),
        help="auto: mlx for an MLX folder, else vllm if installed with a GPU, else hf (transformers)",
    )
    parser.add_argument("--batch_size", type=int, default=None, help=f"completions per batch, {BATCH_SIZES}")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 is greedy decoding")
    parser.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling; 1.0 is off")
    parser.add_argument(
        "--num_generations", type=int, default=1, help="completions per problem (pass@k and maj@k when > 1)"
    )
    parser.add_argument(
        "--max_completion_length",
        type=int,
        default=None,
        help="tokens per completion (default: the training run's own, else "
        f"{generation.DEFAULT_MAX_COMPLETION_LENGTH})",
    )
    parser.add_argument("--seed", type=int, default=0, help="subset choice and sampling seeds")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"], help="weights")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (hf backend)")
    parser.add_argument(
        "--reward_timeout",
        type=float,
        default=None,
        help=f"seconds to grade one answer (default: the training run's own, else {DEFAULT_TIMEOUT})",
    )
    parser.add_argument("--overwrite", action="store_true", help="discard an evaluation already in --output_dir")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def format_summary(results: dict) -> str:
    lines = [f"model: {results['model']}  template: {results['template']}"]
    for label, ds in results["datasets"].items():
        m = ds["metrics"]
        extra = "  ".join(f"{k} {m[k]:.3f}" for k in m if k.startswith(("pass@", "maj@")))
        lines.append(
            f"{label}: accuracy {m['accuracy']:.3f}  format {m.get('format_compliance', 0):.3f}  "
            f"truncated {m['truncation_rate']:.3f}  tokens {m['avg_completion_tokens']:.1f}  n={m['count']}  {extra}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = {k: v for k, v in vars(args).items() if k not in ("model_name_or_path", "datasets", "output_dir")}
    settings["progress"] = not settings.pop("no_progress")
    try:
        with stop_requests(interrupt=True):  # SIGTERM or Ctrl-C: the batches scored so far are on disk already
            results = evaluate(args.model_name_or_path, args.datasets, args.output_dir, **settings)
    except EvalError as err:
        print(f"reson eval: {err}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        print(
            f"\nreson eval: stopped by {stop}; the finished batches are in {args.output_dir}: run the same command to "
            "resume.",
            file=sys.stderr,
        )
        return EXIT_CODES[stop.signum]
    except Exception as err:
        reason = folders.disk_full_error(err)
        if reason is None:
            raise
        print(
            f"reson eval: {folders.disk_full(args.output_dir, reason)}; the finished batches are kept: free space and "
            "run the same command to resume.",
            file=sys.stderr,
        )
        return 1
    print(format_summary(results))
    print(f"results: {Path(args.output_dir) / folders.RESULTS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
