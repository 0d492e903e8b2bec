"""Datasets and prompt templates: GSM8K, MATH and friends, from the hub or from local files.

`load_problems` turns any of them into the same rows::

    {"id": "gsm8k/train/0", "source": "gsm8k", "question": "...", "answer": "72", "solution": "... #### 72"}

plus `level` (1-5) and `subject` for MATH-like rows. `answer` is always the gold *final* answer: the number
after `####` for GSM8K, the `answer` field or else the final boxed answers of the solution for MATH (several
roots boxed one by one give "-2, 1"; a solution whose boxes disagree otherwise is left out and counted in the
log). Short names load from the hub (`openai/gsm8k`, ...) unless `data_dir` or the environment variable
`RESON_DATA_DIR` names a folder laid out like the repository's `../shared/data` (see `LOCAL_FILES`); a path to
a .jsonl, .json or .parquet file in GSM8K or MATH form works too. A row whose gold answer cannot be parsed is
skipped, and counted in one warning per file.

Subsets are seeded permutations, so they are stable across runs and machines: `sample_rows(rows, n, seed)`
is a prefix of the permutation (a larger n is a superset), `canary_rows` takes the held-out canaries from
its other end, and `mix` combines sources in given proportions.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from functools import partial
from pathlib import Path

from reson.core import countdown, synthetic
from reson.core.jsonl import read_jsonl
from reson.core.models import HUB_ID
from reson.core.parsing import boxed_spans, gold_from_solution, parse_gsm8k_gold

logger = logging.getLogger(__name__)

# DeepSeek-R1-Zero's template for base models: plain text, no chat template.
R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the "
    "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
    "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. "
    "User: {question}. Assistant:"
)
# The same with the think tag prefilled (Dr. GRPO / Oat-Zero, Open-Reasoner-Zero): completions start inside
# the think block.
R1_ZERO_THINK_TEMPLATE = R1_ZERO_TEMPLATE + " <think>"
# A plain prompt for evaluating base models the way their reports do.
PLAIN_TEMPLATE = "{question}\nPlease reason step by step, and put your final answer within \\boxed{{}}.\n"

TEMPLATES = {"r1_zero": R1_ZERO_TEMPLATE, "r1_zero_think": R1_ZERO_THINK_TEMPLATE, "plain": PLAIN_TEMPLATE}

# name -> (hub repo, config, {our split: hub split}). AIME 2024 is one 30-problem split, "train" on the hub.
HUB_DATASETS = {
    "gsm8k": ("openai/gsm8k", "main", {"train": "train", "test": "test"}),
    "math": ("DigitalLearningGmbH/MATH-lighteval", None, {"train": "train", "test": "test"}),
    "math500": ("HuggingFaceH4/MATH-500", None, {"test": "test"}),
    "aime24": ("HuggingFaceH4/aime_2024", None, {"test": "train"}),
    "amc23": ("math-ai/amc23", None, {"test": "test"}),
    # one 490k-row split on the hub: train and test are told apart by a hash of the problem (`countdown.split_of`)
    "countdown": ("Jiayi-Pan/Countdown-Tasks-3to4", None, {"train": "train", "test": "train"}),
}
SPLIT_BY_HASH = {"countdown": countdown.split_of}  # name -> split_of(nums, target): its hub rows are filtered
MATH, COUNTDOWN = "math", "countdown"  # the tasks; a row's `task` (a row without one is a maths problem)
# name -> {split: file under a data folder laid out like ../shared/data}
LOCAL_FILES = {
    "gsm8k": {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"},
    "math": {"train": "math/hendrycks_math_train.jsonl", "test": "math/hendrycks_math_test.jsonl"},
    "math500": {"test": "math/math500_test.jsonl"},
    "aime24": {"test": "competition/aime24_test.jsonl"},
    "amc23": {"test": "competition/amc23_test.jsonl"},
    "countdown": {"train": "countdown/train.jsonl", "test": "countdown/test.jsonl"},
}
# Generated here, offline, seeded: the miniature's arithmetic problems, Countdown problems of the hub's shape, and the
# miniature's small Countdown (3 numbers in 1-20, + - *, values up to 100: its search task)
GENERATED = {
    "synthetic": synthetic.problems,
    "synthetic_countdown": countdown.problems,
    "tiny_countdown": partial(countdown.problems, **countdown.TINY),
}
COUNTDOWN_DATASETS = ("countdown", "synthetic_countdown", "tiny_countdown")
SYNTHETIC_SIZES = {"train": 10_000, "test": 500}  # rows a generated dataset gives by default
DATASET_NAMES = (*HUB_DATASETS, *GENERATED)
# Countdown's instruction, the question under the R1-Zero template (TinyZero's wording, parentheses and "exactly" made
# explicit): the thinking goes in <think>, the expression alone in <answer>.
COUNTDOWN_QUESTION = (
    "Using the numbers {nums}, create an equation that equals {target}. You can use basic arithmetic operations "
    "(+, -, *, /) and parentheses, and each number must be used exactly once. Show your work in <think> </think> "
    "tags, and return the final expression in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>"
)
# The miniature's: the first sentence alone. For a 279k-parameter model the rest is ~60 tokens it cannot read, which
# would triple the compute of a pretraining text; the corpus shows the tags and the answer's form instead.
TINY_COUNTDOWN_QUESTION = "Using the numbers {nums}, create an equation that equals {target}"
QUESTIONS = {"tiny_countdown": TINY_COUNTDOWN_QUESTION}  # a Countdown source's own question, where it has one
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")


def task(row_or_name: dict | str) -> str | None:
    """The task of a row, or of a named dataset (None for a file or hub id, known only once its rows are read)."""
    if isinstance(row_or_name, dict):
        return row_or_name.get("task", MATH)
    if row_or_name in COUNTDOWN_DATASETS:
        return COUNTDOWN
    return MATH if row_or_name in DATASET_NAMES else None


def splits(name: str) -> tuple[str, ...]:
    """The splits of a named dataset (`DATASET_NAMES`)."""
    return tuple(HUB_DATASETS[name][2]) if name in HUB_DATASETS else tuple(SYNTHETIC_SIZES)


def hub_records(name: str, split: str, source: str | None = None) -> list[dict]:
    """The raw hub records of a named dataset's split (``source``: where the repo is, by default the hub), filtered
    by `SPLIT_BY_HASH` where the hub has one split for two of ours (an unusable row stays in train, where the loader
    skips and counts it)."""
    repo, config, hub_splits = HUB_DATASETS[name]
    records = load_hub(source or repo, config, hub_splits[split])
    split_of = SPLIT_BY_HASH.get(name)
    if split_of is None:
        return records
    usable = [countdown.read_row(r.get("nums"), r.get("target")) is not None for r in records]
    return [
        r
        for r, ok in zip(records, usable, strict=True)
        if (split_of(r["nums"], r["target"]) if ok else "train") == split
    ]


def is_file_spec(spec: str) -> bool:
    """Whether a dataset spec is meant as a local file: a known suffix, a path-like start, or an existing path."""
    return spec.endswith(FILE_SUFFIXES) or spec.startswith(("/", ".", "~")) or Path(spec).expanduser().exists()


def check_dataset(spec: str, split: str | None = None) -> str:
    """What a dataset spec names, checked from the spec alone before anything loads: "name" (`DATASET_NAMES`, with
    ``split`` one of its splits), "file" (an existing .jsonl/.json/.parquet file) or "hub" (any other hub id,
    ``owner/name[:config]``). ValueError saying what to change otherwise."""
    if spec in DATASET_NAMES:
        if split is not None and split not in splits(spec):
            raise ValueError(f"{spec} has no {split!r} split: choose one of {', '.join(splits(spec))}.")
        return "name"
    if is_file_spec(spec):
        if not Path(spec).expanduser().is_file():
            raise ValueError(f"dataset file {spec}: no such file; give a .jsonl, .json or .parquet file of problems.")
        return "file"
    if "/" in spec and HUB_ID.match(spec.partition(":")[0]):
        return "hub"
    raise ValueError(
        f"unknown dataset {spec!r}: choose from {', '.join(DATASET_NAMES)}, a hub id (owner/name) or a "
        f"{'/'.join(FILE_SUFFIXES)} file."
    )


def format_prompt(question: str, template: str = "r1_zero", tokenizer=None) -> str:
    """The prompt for `question` under a named template; "chat" applies the tokenizer's chat template."""
    if template == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError("template 'chat' needs a tokenizer with a chat template; use 'r1_zero' for base models.")
        messages = [{"role": "user", "content": PLAIN_TEMPLATE.format(question=question)}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}: choose one of {', '.join([*TEMPLATES, 'chat'])}.")
    return TEMPLATES[template].format(question=question.strip())


def chat_template(template: str) -> str | None:
    """A Jinja chat template that renders a conversation as the plain-text training template does (for one user
    message, exactly ``format_prompt(question, template)``), so chat tools that apply a tokenizer's chat template
    (``mlx_lm.chat``, transformers pipelines) prompt the model as it was trained; None for a template without turns."""
    if template not in ("r1_zero", "r1_zero_think"):
        return None
    preamble, after = R1_ZERO_TEMPLATE.split(" User: {question}")
    if "'" in preamble or "'" in after:
        raise ValueError("the template holds a quote, which the Jinja string literals below cannot")
    prefill = TEMPLATES[template].split("{question}")[1]
    return (
        f"{{{{- '{preamble}' -}}}}"
        "{%- for message in messages -%}"
        f"{{%- if message['role'] == 'user' -%}}{{{{- ' User: ' + message['content'] | trim + '{prefill}' -}}}}"
        "{%- elif message['role'] == 'assistant' -%}{{- ' ' + message['content'] | trim + eos_token -}}"
        "{%- endif -%}{%- endfor -%}"
    )


def load_problems(
    name_or_path: str, split: str = "train", data_dir: str | None = None, *, size: int | None = None, seed: int = 0
) -> list[dict]:
    """Normalized rows of a named dataset, a hub id ("owner/name" or "owner/name:config") or a local file.

    `size` and `seed` apply to "synthetic" only (default size: `SYNTHETIC_SIZES[split]`).
    """
    hub_aliases = {repo: name for name, (repo, _, _) in HUB_DATASETS.items()}
    name = hub_aliases.get(name_or_path, name_or_path)
    if size is not None and name not in GENERATED:
        raise ValueError(f"size applies to {', '.join(GENERATED)} only; subsample {name_or_path!r} with sample_rows.")
    if name in GENERATED:
        n = SYNTHETIC_SIZES.get(split, 0) if size is None else size
        return _normalize(GENERATED[name](split, n, seed), None, name, split, name)
    if name in HUB_DATASETS:
        if split not in splits(name):
            raise ValueError(f"{name} has no {split!r} split: choose one of {', '.join(splits(name))}.")
        data_dir = data_dir or os.environ.get("RESON_DATA_DIR")
        if data_dir:
            path = Path(data_dir) / LOCAL_FILES[name][split]
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: data_dir {data_dir} should be laid out like shared/data.")
            return _normalize(*_read_file(path), name, split, str(path))
        return _normalize(hub_records(name, split), None, name, split, HUB_DATASETS[name][0])
    path = Path(name_or_path).expanduser()
    if is_file_spec(name_or_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is not a file: pass a .jsonl, .json or .parquet file of problems.")
        source, file_split = _describe_path(path, split)
        return _normalize(*_read_file(path), source, file_split, str(path))
    if "/" in name_or_path:  # any other hub dataset in GSM8K or MATH form
        repo, _, config = name_or_path.partition(":")
        return _normalize(load_hub(repo, config or None, split), None, repo, split, repo)
    raise ValueError(
        f"unknown dataset {name_or_path!r}: use one of {', '.join(DATASET_NAMES)}, a hub id (owner/name), "
        f"or a path to a {'/'.join(FILE_SUFFIXES)} file."
    )


def with_prompts(rows: list[dict], template: str = "r1_zero", tokenizer=None) -> list[dict]:
    """Copies of `rows` with `prompt` added under `template` ("chat" uses the tokenizer's chat template)."""
    return [{**row, "prompt": format_prompt(row["question"], template, tokenizer)} for row in rows]


def sample_rows(rows: list[dict], n: int, seed: int = 0) -> list[dict]:
    """`n` rows, the first `n` of a seeded permutation: same seed, same rows; a larger `n` is a superset."""
    if n < 0 or n > len(rows):
        source = rows[0]["source"] if rows else "the dataset"
        raise ValueError(f"asked for {n} rows but {source} has {len(rows)}: ask for 0 to {len(rows)}.")
    return [rows[i] for i in _permutation(len(rows), seed)[:n]]


def canary_rows(rows: list[dict], n: int, seed: int = 0, exclude: list[dict] | None = None) -> list[dict]:
    """`n` held-out canary rows, taken from the far end of the permutation `sample_rows` reads from the front.

    So they are disjoint from `sample_rows(rows, k, seed)` whenever k + n <= len(rows). Rows whose id or question
    appears in `exclude` (a training subset) are never chosen.
    """
    excluded = {key for row in exclude or () for key in (row["id"], row["question"])}
    order = _permutation(len(rows), seed)[::-1]
    order = [i for i in order if rows[i]["id"] not in excluded and rows[i]["question"] not in excluded]
    if n < 0 or n > len(order):
        left = f" left after excluding {len(exclude or ())} training rows" if exclude else ""
        raise ValueError(f"asked for {n} canary rows but there are {len(order)} rows{left}: ask for fewer.")
    return [rows[i] for i in order[:n]]


def mix(sources: list[tuple[list[dict], float]], total: int | None = None, seed: int = 0) -> list[dict]:
    """Rows drawn from several sources and shuffled together.

    With `total`, each source's number is a weight: it gives that share of `total` rows (largest-remainder
    rounding, so the counts add up to `total`). Without it, each number is an exact count of rows.
    """
    if not sources:
        raise ValueError("mix needs at least one (rows, weight) source.")
    weights = [w for _, w in sources]
    if any(w < 0 for w in weights) or not sum(weights):
        raise ValueError(f"mix weights must be >= 0 and not all zero, got {weights}.")
    if total is None:
        if any(w != int(w) for w in weights):
            raise ValueError(f"without total, each source needs a whole row count, got {weights}: or pass total.")
        counts = [int(w) for w in weights]
    else:
        shares = [total * w / sum(weights) for w in weights]
        counts = [int(s) for s in shares]
        by_remainder = sorted(range(len(shares)), key=lambda i: shares[i] - counts[i], reverse=True)
        for i in by_remainder[: total - sum(counts)]:
            counts[i] += 1
    mixed = [row for (rows, _), n in zip(sources, counts, strict=True) for row in sample_rows(rows, n, seed)]
    random.Random(seed).shuffle(mixed)
    return mixed


def to_hf_dataset(rows: list[dict]):
    """A `datasets.Dataset` for TRL; a column missing from some rows (e.g. `level` in a mix) is None there."""
    from datasets import Dataset

    columns = list(dict.fromkeys(key for row in rows for key in row))
    return Dataset.from_dict({key: [row.get(key) for row in rows] for key in columns})


def _permutation(size: int, seed: int) -> list[int]:
    order = list(range(size))
    random.Random(seed).shuffle(order)
    return order


def _read_file(path: Path) -> tuple[list[dict], list[str]]:
    """Raw records of a JSONL (or JSON array) or Parquet file, and where each one is in the file ("line 12"). A JSONL
    line that is not a JSON object (damaged, not UTF-8) is skipped and counted, with its line named."""
    if path.suffix not in FILE_SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(FILE_SUFFIXES)}.")
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ImportError(f"reading {path} needs pyarrow: pip install 'reson-llm[train]'.") from e
        records = pq.read_table(path).to_pylist()
        return records, [f"row {i + 1}" for i in range(len(records))]
    if path.read_bytes().lstrip()[:1] == b"[":
        try:
            records = json.loads(path.read_bytes())
        except ValueError as error:  # not UTF-8, or not JSON
            raise ValueError(f"{path}: not a JSON array of problems ({error}); fix the file.") from None
        return records, [f"item {i + 1}" for i in range(len(records))]
    lines = read_jsonl(path)
    damaged = [*lines.skipped, *([len(path.read_bytes().split(b"\n"))] if lines.torn_tail else [])]
    if damaged:
        logger.warning(
            f"{path}: skipped {len(damaged)} line(s) that are not a JSON object (damaged, or not UTF-8): "
            f"{_listed([f'line {n}' for n in damaged])}."
        )
    return lines.records, [f"line {n}" for n in lines.numbers]


def _listed(places: list[str]) -> str:
    """The first five places, then ``...``."""
    return ", ".join(places[:5]) + (", ..." if len(places) > 5 else "")


def load_hub(repo: str, config: str | None, split: str) -> list[dict]:
    """Raw records of one split of a hub dataset through `datasets.load_dataset` (`repo` may be a local folder laid
    out like the hub repo)."""
    try:
        import datasets
    except ImportError as e:
        raise ImportError(f"loading {repo} from the hub needs datasets: pip install 'reson-llm[train]'.") from e
    try:
        return datasets.load_dataset(repo, config, split=split).to_list()
    except Exception as e:  # offline, unknown repo or split: say how to work from local files instead
        raise ValueError(
            f"could not load {repo!r} (config {config}, split {split!r}) from the hub: {e}. Offline, set data_dir "
            "or RESON_DATA_DIR to a folder laid out like shared/data, or pass a local file."
        ) from e


def _describe_path(path: Path, split: str) -> tuple[str, str]:
    """(source, split) for a file: a known file of the shared/data layout keeps its name, else the file stem."""
    for name, files in LOCAL_FILES.items():
        for file_split, relative in files.items():
            if path.parts[-len(Path(relative).parts) :] == Path(relative).parts:
                return name, file_split
    match = re.fullmatch(r"(.*?)[_-]?(train|test|validation)", path.stem)
    if match:
        return (match.group(1) or path.parent.name or "file"), match.group(2)
    return path.stem, split


def _normalize(records: list[dict], places: list[str] | None, source: str, split: str, origin: str) -> list[dict]:
    """Rows {id, source, question, answer[, solution, level, subject]}; rows without a usable question or gold answer
    are skipped and counted, named by their ``places`` in the file when given (``line 12``), else by their ids."""
    if not records:
        raise ValueError(f"{origin} has no rows: give a file of problems (one JSON object a line).")
    columns = {key for record in records for key in record}
    if {"nums", "target"} <= columns and not columns & {"question", "problem"}:
        return _countdown_rows(records, places, source, split, origin)
    question_key = "problem" if "problem" in columns else "question" if "question" in columns else None
    if question_key is None or not columns & {"answer", "solution"}:
        raise ValueError(
            f"{origin} has columns {sorted(columns)}; it needs a question ('question' or 'problem') and a gold "
            "answer ('answer', or a 'solution' ending in \\boxed{}, or a GSM8K 'answer' with '####')."
        )
    # GSM8K form: the answer column holds the worked solution, with the final answer after '####'.
    gsm8k_form = "solution" not in columns and any("####" in str(r.get("answer", "")) for r in records)
    rows, skipped, ambiguous, combined = [], [], [], 0
    for index, record in enumerate(records):
        row_id = str(record.get("unique_id") or f"{source}/{split}/{index}")
        place = row_id if not places else f"{places[index]} ({row_id})" if record.get("unique_id") else places[index]
        question = record.get(question_key)
        solution = record.get("answer") if gsm8k_form else record.get("solution")
        solution = solution if isinstance(solution, str) else None
        if gsm8k_form:
            try:
                answer = _gold_string(parse_gsm8k_gold(solution)) if solution and "####" in solution else None
            except ValueError:
                answer = None
        else:
            answer = _gold_string(record.get("answer"))
            if answer is None and solution:
                answer = _gold_string(gold_from_solution(solution))
                if answer is None and gold_from_solution(solution, strict=False):
                    ambiguous.append(place)
                    continue
                combined += answer is not None and len({c for _, _, c in boxed_spans(solution)}) > 1
        if not isinstance(question, str) or not question.strip() or answer is None:
            skipped.append(place)
            continue
        row = {"id": row_id, "source": source, "question": question.strip(), "answer": answer}
        if solution:
            row["solution"] = solution
        if "level" in columns:
            row["level"] = _level(record.get("level"))
        if columns & {"subject", "type"}:
            row["subject"] = record.get("subject") or record.get("type")
        rows.append(row)
    if skipped:  # no question, or no gold: a GSM8K answer without '####', a MATH solution without a box
        logger.warning(
            f"{origin}: skipped {len(skipped)} of {len(records)} rows whose question or gold answer could "
            f"not be parsed: {_listed(skipped)}."
        )
    if ambiguous:  # a wrong gold is a wrong reward: such rows are left out, not guessed
        logger.warning(
            f"{origin}: skipped {len(ambiguous)} of {len(records)} rows whose solution boxes several different "
            f"answers that are not one final list (a box used as notation, an alternative added after the answer): "
            f"{_listed(ambiguous)}."
        )
    if combined:
        logger.info(f"{origin}: {combined} gold answers list several boxed answers of the final line (roots).")
    if not rows:
        raise ValueError(f"{origin}: none of its {len(records)} rows has a parseable question and gold answer.")
    return rows


def _countdown_rows(records: list[dict], places: list[str] | None, source: str, split: str, origin: str) -> list[dict]:
    """Countdown rows {id, source, task, question, answer (the target), nums, target[, solution]}; a row whose
    ``nums`` or ``target`` cannot be used (missing, not whole numbers, too many) is skipped and counted."""
    rows, skipped = [], []
    for index, record in enumerate(records):
        row_id = f"{source}/{split}/{index}"
        read = countdown.read_row(record.get("nums"), record.get("target"))
        if read is None:
            skipped.append(places[index] if places else row_id)
            continue
        nums, target = list(read[0]), read[1]
        question = QUESTIONS.get(source, COUNTDOWN_QUESTION).format(nums=nums, target=target)
        row = {"id": row_id, "source": source, "task": COUNTDOWN, "question": question, "answer": str(target)}
        row.update(nums=nums, target=target)
        if isinstance(record.get("solution"), str):
            row["solution"] = record["solution"]
        rows.append(row)
    if skipped:
        logger.warning(
            f"{origin}: skipped {len(skipped)} of {len(records)} Countdown rows without usable 'nums' (whole numbers) "
            f"and 'target': {_listed(skipped)}."
        )
    if not rows:
        raise ValueError(f"{origin}: none of its {len(records)} rows has usable Countdown 'nums' and 'target'.")
    return rows


def _gold_string(value) -> str | None:
    """A gold answer as a clean string: 27.0 -> "27" (AMC), "025" -> "25" (AIME), "" -> None."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        text = str(int(text))
    return text or None


def _level(value) -> int | None:
    """MATH difficulty 1-5 from 3 or "Level 3"; None for the odd "Level ?"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.fullmatch(r"(?:Level\s*)?(\d+)", str(value or "").strip())
    return int(match.group(1)) if match else None
