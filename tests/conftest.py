"""Shared fixtures: the datasets' subset the suite carries and a tiny model built here, once per test session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """tests/data: a fixed subset of GSM8K, MATH, MATH-500, AIME 2024 and AMC 2023, laid out like ../shared/data
    (`reson.core.data.LOCAL_FILES`), so `data_dir=shared_data` loads it by name. Which rows and why: its PROVENANCE.md.
    """
    return DATA


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, shared_data) -> Path:
    """A random tiny Qwen2 model and a tokenizer trained on GSM8K text under the R1-Zero template."""
    from reson.core.data import format_prompt
    from reson.miniature.tiny_model import save_tiny_model

    lines = (shared_data / "gsm8k" / "train.jsonl").read_text().splitlines()[:300]
    rows = [json.loads(line) for line in lines]
    texts = [format_prompt(r["question"]) + " <think>" + r["answer"] + "</think> <answer>1</answer>" for r in rows]
    return save_tiny_model(tmp_path_factory.mktemp("tiny_model"), texts, seed=0)
