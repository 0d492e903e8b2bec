"""Data loading, normalization, subsets and templates, offline against the suite's own subset of the datasets
(tests/data, see its PROVENANCE.md; no hub access). The full sets' counts are checked by bench/bench_grading.py."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections import Counter

import pytest

from reson.core.data import (
    DATASET_NAMES,
    HUB_DATASETS,
    LOCAL_FILES,
    canary_rows,
    format_prompt,
    load_problems,
    mix,
    sample_rows,
    to_hf_dataset,
    with_prompts,
)

# (lines in the file, rows it yields) for each file of tests/data. The subset holds every MATH row the loader leaves
# out of the full sets: in train, 2 solutions that end in an empty \boxed{} and 11 whose boxes disagree (ambiguous
# golds), in test 8 ambiguous golds; every other row loads.
EXPECTED_ROWS = {
    ("gsm8k", "train"): (306, 306),
    ("gsm8k", "test"): (55, 55),
    ("math", "train"): (55, 42),  # less 2 empty boxes and 11 ambiguous golds
    ("math", "test"): (59, 51),  # less 8 ambiguous golds
    ("math500", "test"): (40, 40),
    ("aime24", "test"): (6, 6),
    ("amc23", "test"): (11, 11),
}
MATH_SUBJECTS = {
    "Algebra",
    "Intermediate Algebra",
    "Prealgebra",
    "Geometry",
    "Number Theory",
    "Counting & Probability",
    "Precalculus",
}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test may reach the hub, and none may pick up a data folder from the developer's environment."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("RESON_DATA_DIR", raising=False)


def raw(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def rows_of(n: int, source: str = "toy") -> list[dict]:
    return [
        {"id": f"{source}/train/{i}", "source": source, "question": f"{source} q{i}", "answer": str(i)}
        for i in range(n)
    ]


# ---------------------------------------------------------------------------------------------- loading by name


def test_math_golds_are_the_final_boxed_answers_and_ambiguous_ones_are_left_out(shared_data, caplog):
    """Roots boxed one by one make one gold list; a solution with a box used as notation (prealgebra/177: the answer
    is 6, its last box 12) or an alternative boxed after the answer (algebra/1730: -3, then "3 is also accepted") is
    left out, and the log says how many and which."""
    with caplog.at_level(logging.WARNING, logger="reson.core.data"):
        rows = {row["id"]: row for row in load_problems("math", "test", data_dir=str(shared_data))}
    assert rows["test/algebra/1878.json"]["answer"] == "-2, 1"
    assert "test/prealgebra/177.json" not in rows and "test/algebra/1730.json" not in rows
    [message] = [r.getMessage() for r in caplog.records if "boxes several different answers" in r.getMessage()]
    assert "skipped 8 of 59 rows" in message and "test/algebra/1730.json" in message


@pytest.mark.parametrize(("name", "split"), list(EXPECTED_ROWS))
def test_every_local_file_loads_by_name_with_normalized_fields(shared_data, name, split):
    rows = load_problems(name, split, data_dir=str(shared_data))
    lines, loaded = EXPECTED_ROWS[(name, split)]
    assert len(raw(shared_data / LOCAL_FILES[name][split])) == lines and len(rows) == loaded
    assert len({r["id"] for r in rows}) == len(rows)
    for row in rows:
        assert {"id", "source", "question", "answer"} <= row.keys()
        assert row["source"] == name
        assert all(isinstance(row[k], str) and row[k] for k in ("id", "question", "answer"))
        if name in ("math", "math500"):
            assert row["subject"] in MATH_SUBJECTS
            assert row["level"] in {1, 2, 3, 4, 5} or row["id"] in {
                "train/geometry/377.json",
                "train/geometry/471.json",
            }
            assert "\\boxed" in row["solution"]
        else:
            assert "level" not in row and "subject" not in row
    if name in ("math", "math500"):  # "Level 3" and 3 both read as 3; "Level ?" as None
        assert {r["subject"] for r in rows} == MATH_SUBJECTS and {r["level"] for r in rows} - {None} == {1, 2, 3, 4, 5}
        unknown = [r["id"] for r in rows if r["level"] is None]
        assert unknown == (["train/geometry/377.json", "train/geometry/471.json"] if split == "train" else [])


def test_env_data_dir_resolves_names_and_hub_ids(shared_data, monkeypatch):
    monkeypatch.setenv("RESON_DATA_DIR", str(shared_data))
    by_env = load_problems("gsm8k", "test")
    assert by_env == load_problems("openai/gsm8k", "test")  # the hub id is an alias of the short name
    assert by_env == load_problems("gsm8k", "test", data_dir=str(shared_data))
    assert load_problems("aime24", "test")[0]["id"] == "aime24/test/0"


def test_gsm8k_gold_is_the_number_after_hashes_without_commas(shared_data):
    for split in ("train", "test"):
        records = raw(shared_data / "gsm8k" / f"{split}.jsonl")
        rows = load_problems("gsm8k", split, data_dir=str(shared_data))
        assert [r["answer"] for r in rows] == [x["answer"].split("####")[-1].strip().replace(",", "") for x in records]
        assert [r["solution"] for r in rows] == [x["answer"] for x in records]
    with_commas = [x for x in records if "," in x["answer"].split("####")[-1]]
    assert with_commas, "the test split has answers written with thousands commas"
    assert all("," not in r["answer"] for r in rows)


def test_math_gold_from_last_boxed_agrees_with_math500_answers(shared_data):
    """MATH has no answer field: its gold is the last \\boxed{} of the solution, which MATH-500 gives explicitly."""
    math_test = {r["id"]: r for r in load_problems("math", "test", data_dir=str(shared_data))}
    math500 = load_problems("math500", "test", data_dir=str(shared_data))
    assert [r["answer"] for r in math500] == [x["answer"] for x in raw(shared_data / "math" / "math500_test.jsonl")]
    for row in math500:  # same problem, same id: so a MATH-500 problem can be excluded from MATH training rows
        assert math_test[row["id"]]["answer"] == row["answer"]
        assert (math_test[row["id"]]["level"], math_test[row["id"]]["subject"]) == (row["level"], row["subject"])


def test_competition_answers_are_clean_number_strings(shared_data):
    aime = load_problems("aime24", "test", data_dir=str(shared_data))
    amc = load_problems("amc23", "test", data_dir=str(shared_data))
    raw_aime = raw(shared_data / "competition" / "aime24_test.jsonl")
    raw_amc = raw(shared_data / "competition" / "amc23_test.jsonl")
    assert [r["answer"] for r in aime] == [str(int(x["answer"])) for x in raw_aime]  # "025" -> "25"
    assert [r["answer"] for r in amc] == [f"{x['answer']:g}" for x in raw_amc]  # 27.0 -> "27"
    assert any(x["answer"].startswith("0") for x in raw_aime) and "." not in "".join(r["answer"] for r in amc)


def test_synthetic_rows_come_from_the_generator():
    from reson.core.synthetic import problems

    rows = load_problems("synthetic", "test", size=25, seed=3)
    generated = problems("test", 25, 3)
    assert [r["question"] for r in rows] == [g["question"] for g in generated]
    assert [r["answer"] for r in rows] == [g["answer"].split("####")[-1].strip() for g in generated]
    assert {r["source"] for r in rows} == {"synthetic"} and all(
        r["level"] == g["level"] for r, g in zip(rows, generated, strict=True)
    )
    assert rows == load_problems("synthetic", "test", size=25, seed=3)
    assert rows != load_problems("synthetic", "test", size=25, seed=4)


# ---------------------------------------------------------------------------------------------- loading by path


@pytest.mark.parametrize(("name", "split"), [("gsm8k", "test"), ("math500", "test"), ("amc23", "test")])
def test_a_path_to_a_shared_file_loads_as_its_name_does(shared_data, name, split):
    path = shared_data / LOCAL_FILES[name][split]
    assert load_problems(str(path)) == load_problems(name, split, data_dir=str(shared_data))


def test_an_unknown_path_takes_source_and_split_from_the_file_name(tmp_path, shared_data):
    records = raw(shared_data / "gsm8k" / "test.jsonl")[:3]
    rows = load_problems(write_jsonl(tmp_path / "school_test.jsonl", records))
    assert [r["id"] for r in rows] == ["school/test/0", "school/test/1", "school/test/2"]
    rows = load_problems(write_jsonl(tmp_path / "mine.jsonl", records), split="validation")
    assert rows[2]["id"] == "mine/validation/2" and rows[2]["source"] == "mine"


def test_parquet_and_json_array_files_load_like_jsonl(tmp_path, shared_data):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    for name in ("math500", "gsm8k"):
        records = raw(shared_data / LOCAL_FILES[name]["test"])[:20]
        jsonl_rows = load_problems(write_jsonl(tmp_path / f"{name}_test.jsonl", records))
        pq.write_table(pa.Table.from_pylist(records), tmp_path / f"{name}_test.parquet")
        (tmp_path / f"{name}_test.json").write_text(json.dumps(records))
        assert load_problems(str(tmp_path / f"{name}_test.parquet")) == jsonl_rows
        assert load_problems(str(tmp_path / f"{name}_test.json")) == jsonl_rows
        assert len(jsonl_rows) == 20


def test_plain_question_answer_file_keeps_its_answers(tmp_path):
    path = write_jsonl(
        tmp_path / "plain.jsonl", [{"question": "1+1?", "answer": "2"}, {"question": "x?", "answer": 0.5}]
    )
    assert [(r["question"], r["answer"]) for r in load_problems(path)] == [("1+1?", "2"), ("x?", "0.5")]


# ------------------------------------------------------------------------------------------------- the hub path


@pytest.mark.parametrize(
    ("name", "split"),
    [("gsm8k", "train"), ("math", "test"), ("math500", "test"), ("aime24", "test"), ("amc23", "test")],
)
def test_hub_names_call_load_dataset_with_repo_config_and_split(shared_data, monkeypatch, name, split):
    """The hub itself is out of reach here: load_dataset is replaced by one that serves the same rows locally."""
    datasets = pytest.importorskip("datasets")
    calls = []

    def serve_locally(repo, config=None, split=None):  # `split` is the hub's split name here
        calls.append((repo, config, split))
        ours = {hub: ours for ours, hub in hub_splits.items()}[split]
        return datasets.Dataset.from_list(raw(shared_data / LOCAL_FILES[name][ours]))

    repo, config, hub_splits = HUB_DATASETS[name]
    monkeypatch.setattr(datasets, "load_dataset", serve_locally)
    rows = load_problems(name, split)
    assert calls == [(repo, config, hub_splits[split])]
    assert rows == load_problems(name, split, data_dir=str(shared_data))


def test_hub_while_offline_fails_with_a_hint_to_use_local_files():
    """The real code path, run in a fresh interpreter so the offline switches take effect on import."""
    code = (
        "from reson.core.data import load_problems\ntry:\n load_problems('gsm8k')\nexcept ValueError as e:\n print(e)"  # noqa: E501
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "'openai/gsm8k'" in out.stdout and "RESON_DATA_DIR" in out.stdout, out.stderr


# ---------------------------------------------------------------------------------------------- bad input


def test_missing_and_unknown_inputs_say_what_to_do(tmp_path, shared_data):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_problems(str(tmp_path / "nope.jsonl"))
    with pytest.raises(FileNotFoundError, match="is not a file"):
        load_problems(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"gsm8k/train\.jsonl not found.*laid out like"):
        load_problems("gsm8k", data_dir=str(tmp_path))
    with pytest.raises(
        ValueError,
        match="unknown dataset 'gsm9k'.*amc23, countdown, synthetic, synthetic_countdown.*path",
    ):
        load_problems("gsm9k")
    assert set(DATASET_NAMES) == {"gsm8k", "math", "math500", "aime24", "amc23", "countdown", "synthetic"} | {
        "synthetic_countdown",
        "tiny_countdown",
    }
    with pytest.raises(ValueError, match="math500 has no 'train' split: choose one of test"):
        load_problems("math500", "train", data_dir=str(shared_data))
    with pytest.raises(ValueError, match="size applies to synthetic, synthetic_countdown, tiny_countdown only"):
        load_problems("gsm8k", "test", data_dir=str(shared_data), size=10)
    (tmp_path / "rows.csv").write_text("question,answer\n")
    with pytest.raises(ValueError, match=r"rows\.csv: unsupported file type '\.csv'"):
        load_problems(str(tmp_path / "rows.csv"))


def test_files_without_the_needed_columns_name_file_and_columns(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"text": "hi", "label": 1}])
    with pytest.raises(ValueError, match=r"bad\.jsonl has columns \['label', 'text'\]; it needs a question .*answer"):
        load_problems(path)
    path = write_jsonl(tmp_path / "noanswer.jsonl", [{"problem": "hi"}])
    with pytest.raises(ValueError, match=r"noanswer\.jsonl has columns \['problem'\]"):
        load_problems(path)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match=r"empty\.jsonl has no rows"):
        load_problems(str(tmp_path / "empty.jsonl"))
    (tmp_path / "broken.jsonl").write_bytes(b'{"question": \n\xff\xfe not UTF-8\n')  # nothing usable left
    with pytest.raises(ValueError, match=r"broken\.jsonl has no rows"):
        load_problems(str(tmp_path / "broken.jsonl"))


def test_damaged_and_non_utf8_lines_are_skipped_and_named(tmp_path, caplog):
    good = b'{"question": "What is 2+2?", "answer": "#### 4"}\n'
    (tmp_path / "mixed_test.jsonl").write_bytes(good + b'{"question": \n' + b"\xff\xfe\n" + good)
    with caplog.at_level(logging.WARNING, logger="reson.core.data"):
        rows = load_problems(str(tmp_path / "mixed_test.jsonl"))
    assert [row["answer"] for row in rows] == ["4", "4"]
    said = [r.getMessage() for r in caplog.records]
    assert any("mixed_test.jsonl: skipped 2 line(s)" in m and "line 2, line 3" in m for m in said), said


def test_unparseable_gold_rows_are_skipped_with_one_warning(tmp_path, caplog):
    records = [
        {"question": "a", "answer": "so 3 + 4 = 7\n#### 7"},
        {"question": "b", "answer": "no final answer marker"},
        {"question": "c", "answer": "1,000 + 234\n#### 1,234"},
        {"question": "", "answer": "#### 5"},
        {"question": "e", "answer": "#### "},
    ]
    with caplog.at_level(logging.WARNING, logger="reson.core.data"):
        rows = load_problems(write_jsonl(tmp_path / "gold_test.jsonl", records))
    assert [(r["id"], r["answer"]) for r in rows] == [("gold/test/0", "7"), ("gold/test/2", "1234")]
    warnings = [r for r in caplog.records if r.name == "reson.core.data"]
    assert len(warnings) == 1 and "skipped 3 of 5 rows" in warnings[0].getMessage()
    assert "line 2, line 4, line 5" in warnings[0].getMessage()  # the file and the lines of the rows skipped
    boxless = [{"problem": "p", "solution": "no box here"}, {"problem": "q", "solution": "so \\boxed{}"}]
    with pytest.raises(ValueError, match="none of its 2 rows has a parseable question and gold answer"):
        load_problems(write_jsonl(tmp_path / "boxless.jsonl", boxless))


def test_math_rows_with_empty_boxes_are_skipped_in_one_warning(shared_data, caplog):
    with caplog.at_level(logging.WARNING, logger="reson.core.data"):
        rows = load_problems("math", "train", data_dir=str(shared_data))
    messages = [r.getMessage() for r in caplog.records if "could not be parsed" in r.getMessage()]
    assert len(messages) == 1 and "skipped 2 of 55" in messages[0] and "train/number_theory/7115.json" in messages[0]
    assert "train/number_theory/7115.json" not in {r["id"] for r in rows}
    no_brace = {
        r["id"]: r["answer"] for r in rows if r["id"] in {"train/algebra/24014.json", "train/algebra/25040.json"}
    }
    assert no_brace == {"train/algebra/24014.json": "2", "train/algebra/25040.json": "9"}  # "\boxed 2" has no braces


# ------------------------------------------------------------------------------------------ subsets and mixing


def test_sample_rows_is_deterministic_and_nested():
    rows = rows_of(200)
    small, large = sample_rows(rows, 10, seed=7), sample_rows(rows, 50, seed=7)
    assert small == sample_rows(rows, 10, seed=7)
    assert large[:10] == small  # a larger n extends the smaller one
    assert len({r["id"] for r in large}) == 50
    assert sample_rows(rows, 50, seed=8) != large
    assert sample_rows(rows, 50, seed=7) != rows[:50]  # shuffled, not the head of the file
    assert sorted(sample_rows(rows, 200, seed=7), key=lambda r: int(r["answer"])) == rows
    with pytest.raises(ValueError, match="asked for 201 rows but toy has 200"):
        sample_rows(rows, 201)
    with pytest.raises(ValueError, match="asked for -1 rows"):
        sample_rows(rows, -1)


def test_canaries_are_held_out_from_training_subsets():
    rows = rows_of(100)
    canaries = canary_rows(rows, 10, seed=1)
    assert canaries == canary_rows(rows, 10, seed=1) and len({r["id"] for r in canaries}) == 10
    assert not {r["id"] for r in canaries} & {r["id"] for r in sample_rows(rows, 90, seed=1)}
    train = sample_rows(rows, 95, seed=2)  # more than the permutation's far end leaves: exclude them explicitly
    held_out = canary_rows(rows, 5, seed=2, exclude=train)
    assert not {r["id"] for r in held_out} & {r["id"] for r in train}
    renamed = [{**r, "id": "other/" + r["id"]} for r in train]  # the same questions under other ids
    assert not {r["question"] for r in canary_rows(rows, 5, seed=2, exclude=renamed)} & {r["question"] for r in train}
    with pytest.raises(ValueError, match="asked for 6 canary rows but there are 5 rows left after excluding 95"):
        canary_rows(rows, 6, seed=2, exclude=train)


def test_mix_draws_the_given_proportions_and_counts():
    gsm, math = rows_of(300, "gsm8k"), rows_of(200, "math")
    mixed = mix([(gsm, 0.7), (math, 0.3)], total=100, seed=0)
    assert Counter(r["source"] for r in mixed) == {"gsm8k": 70, "math": 30}
    assert len({r["id"] for r in mixed}) == 100
    assert [r["source"] for r in mixed[:20]] != sorted(r["source"] for r in mixed[:20])  # interleaved, not blocks
    assert mixed == mix([(gsm, 7), (math, 3)], total=100, seed=0)  # weights need not sum to 1
    thirds = mix([(gsm, 1), (math, 1), (rows_of(10, "x"), 1)], total=10, seed=0)
    assert len(thirds) == 10 and sorted(Counter(r["source"] for r in thirds).values()) == [3, 3, 4]
    exact = mix([(gsm, 25), (math, 5)], seed=1)
    assert Counter(r["source"] for r in exact) == {"gsm8k": 25, "math": 5}
    assert {r["id"] for r in exact if r["source"] == "math"} == {r["id"] for r in sample_rows(math, 5, seed=1)}
    with pytest.raises(ValueError, match="whole row count"):
        mix([(gsm, 0.5), (math, 0.5)])
    with pytest.raises(ValueError, match="asked for 250 rows but math has 200"):
        mix([(gsm, 0.5), (math, 0.5)], total=500)
    with pytest.raises(ValueError, match="not all zero"):
        mix([(gsm, 0), (math, 0)], total=10)


def test_to_hf_dataset_keeps_every_column_of_a_mix(shared_data):
    pytest.importorskip("datasets")
    gsm = load_problems("gsm8k", "test", data_dir=str(shared_data))
    math = load_problems("math500", "test", data_dir=str(shared_data))
    rows = with_prompts(mix([(gsm, 4), (math, 4)], seed=0))
    dataset = to_hf_dataset(rows)
    assert len(dataset) == 8
    assert {"id", "source", "question", "answer", "solution", "level", "subject", "prompt"} <= set(
        dataset.column_names
    )
    assert [dataset[i]["level"] is None for i in range(8)] == [r["source"] == "gsm8k" for r in rows]
    assert dataset[0]["prompt"] == rows[0]["prompt"]


# ------------------------------------------------------------------------------------------------ templates


def test_templates_end_where_the_completion_starts():
    assert format_prompt("What is 2+3?").endswith("User: What is 2+3?. Assistant:")
    assert format_prompt("What is 2+3?", "r1_zero_think").endswith("Assistant: <think>")
    assert format_prompt(" What is 2+3? ", "plain").startswith("What is 2+3?\nPlease reason step by step")
    with pytest.raises(ValueError, match="unknown template 'r2'.*r1_zero, r1_zero_think, plain, chat"):
        format_prompt("q", "r2")


def test_with_prompts_adds_a_prompt_without_touching_the_input():
    rows = rows_of(3)
    prompted = with_prompts(rows, "r1_zero_think")
    assert "prompt" not in rows[0]
    assert [p["prompt"] for p in prompted] == [format_prompt(r["question"], "r1_zero_think") for r in rows]
    assert all(p["prompt"].endswith("<think>") and p["question"] in p["prompt"] for p in prompted)


def test_chat_template_uses_the_tokenizer():
    from reson.miniature.tiny_model import train_tokenizer

    tokenizer = train_tokenizer(["What is 2+3? Please reason step by step"], vocab_size=300)
    with pytest.raises(ValueError, match="needs a tokenizer with a chat template"):
        with_prompts(rows_of(1), "chat", tokenizer)
    tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    prompt = with_prompts(rows_of(1), "chat", tokenizer)[0]["prompt"]
    assert prompt.startswith("<|user|>toy q0\nPlease reason step by step") and prompt.endswith("<|assistant|>")
