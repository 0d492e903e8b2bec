"""Write the small, fixed subset of GSM8K, MATH, MATH-500, AIME 2024 and AMC 2023 that the test suite carries.

    python tests/data/make_subset.py                              # from ../shared/data beside the clone
    python tests/data/make_subset.py --source DIR --output_dir tests/data

The subset is laid out like `shared/data` (`reson.core.data.LOCAL_FILES`), so `--data_dir tests/data` loads it by
name. Every line written is a line of the source file, byte for byte, in the source's order; nothing is random, and
the sources are checked against the sha256 sums in shared/data/PROVENANCE.md first, so the same command always
writes the same files. Which rows, and why: `choose` below; tests/data/PROVENANCE.md repeats it for readers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[2] / "shared" / "data"

# file -> sha256 of the full file, from shared/data/PROVENANCE.md
SOURCES = {
    "gsm8k/train.jsonl": "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
    "gsm8k/test.jsonl": "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
    "math/hendrycks_math_train.jsonl": "00aa30008a611172529ab775ed6f3af9efd32974625b19181c3ebfc724134e52",
    "math/hendrycks_math_test.jsonl": "1b833f0f8869d7cb975debfe04f0697bd23455c388045ba9159e5046d37df5fa",
    "math/math500_test.jsonl": "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132",
    "competition/aime24_test.jsonl": "af2b8bd2aa911b6333ad0df32f3ca05c7ae8ed10f1731f4372c8ae26990bf7ac",
    "competition/amc23_test.jsonl": "43707e1ca784602d8479de24ee8ce36609dbebc46dd152b0b12a46611aa898a4",
}

# MATH rows the loader must leave out, all of them: 2 train solutions that end in an empty \boxed{}, and the
# solutions whose boxes disagree (a box used as notation, an alternative boxed after the answer): 11 train, 8 test
MATH_DROPPED = {
    "train/number_theory/7115.json",
    "train/number_theory/7117.json",
    "train/algebra/535.json",
    "train/counting_and_probability/955.json",
    "train/geometry/892.json",
    "train/intermediate_algebra/1113.json",
    "train/intermediate_algebra/1266.json",
    "train/number_theory/7041.json",
    "train/precalculus/571.json",
    "train/precalculus/722.json",
    "train/precalculus/865.json",
    "train/precalculus/982.json",
    "train/precalculus/1269.json",
    "test/algebra/1197.json",
    "test/algebra/1730.json",
    "test/intermediate_algebra/747.json",
    "test/intermediate_algebra/1020.json",
    "test/intermediate_algebra/2089.json",
    "test/prealgebra/177.json",
    "test/prealgebra/1407.json",
    "test/precalculus/1233.json",
}
# MATH rows kept for a quirk the loader must read right
MATH_QUIRKS = {
    "train/geometry/377.json",  # "Level ?": level None
    "train/geometry/471.json",  # "Level ?"
    "train/algebra/24014.json",  # "\boxed 2", no braces
    "train/algebra/25040.json",  # "\boxed 9", no braces
    "train/algebra/152.json",  # two boxed pairs on the final line: gold "(-2,18), (8,38)"
    "train/precalculus/1089.json",  # roots boxed one by one: "5, -3"
    "test/algebra/1878.json",  # roots boxed one by one: "-2, 1"
    "test/intermediate_algebra/225.json",  # "3, \frac{2}{5}"
    "test/precalculus/679.json",  # "\frac{\pi}{4}, \frac{5\pi}{4}"
}
# MATH-500 neighbours (the reward test scores each solution against the next row's gold): two '7's, two '3's,
# and "5" followed by "x=5", which math-verify counts equal
MATH500_NEIGHBOURS = {
    "test/algebra/1837.json",
    "test/algebra/2193.json",
    "test/number_theory/978.json",
    "test/algebra/2199.json",
    "test/number_theory/928.json",
    "test/counting_and_probability/761.json",
}


def first_per_cell(rows: list[dict], key: Callable[[dict], object]) -> set[int]:
    """The index of the first row, in file order, of each value of `key`."""
    seen = {}
    for index, row in enumerate(rows):
        seen.setdefault(key(row), index)
    return set(seen.values())


def longest(rows: list[dict], field: str) -> set[int]:
    return {max(range(len(rows)), key=lambda i: len(rows[i][field]))}


def gsm8k_rows(rows: list[dict], head: int) -> set[int]:
    """The first `head` rows, the first two golds written with thousands commas ("1,080"), every negative gold,
    and the longest question."""
    gold = [row["answer"].split("####")[-1].strip() for row in rows]
    commas = [i for i, g in enumerate(gold) if "," in g][:2]
    negative = [i for i, g in enumerate(gold) if g.startswith("-")]
    return set(range(head)) | set(commas) | set(negative) | longest(rows, "question")


def math500_ids(source: Path) -> set[str]:
    """The MATH-500 rows kept: the first of each (subject, level) and the neighbours the reward test pairs."""
    rows = read(source / "math" / "math500_test.jsonl")[1]
    cells = first_per_cell(rows, lambda r: (r["subject"], r["level"]))
    return {rows[i]["unique_id"] for i in cells} | MATH500_NEIGHBOURS


def math_rows(rows: list[dict], keep_ids: set[str], per_cell: Callable[[dict], object]) -> set[int]:
    """Rows named by id, the first row of each `per_cell` value, and the longest problem."""
    named = {i for i, row in enumerate(rows) if row["unique_id"] in keep_ids}
    return named | first_per_cell(rows, per_cell) | longest(rows, "problem")


def choose(relative: str, rows: list[dict], lines: list[bytes], in_math500: set[str]) -> set[int]:
    """Which rows (indices) of the file `relative` to keep."""
    named = MATH_DROPPED | MATH_QUIRKS
    if relative == "gsm8k/train.jsonl":  # the first 300 build the tiny test model's tokenizer (tests/conftest.py)
        return gsm8k_rows(rows, head=300)
    if relative == "gsm8k/test.jsonl":  # evaluations in the tests sample up to 30 problems, training canaries 4
        return gsm8k_rows(rows, head=50)
    if relative == "math/hendrycks_math_train.jsonl":  # every subject x level
        return math_rows(rows, named, lambda r: (r["type"], r["level"]))
    if relative == "math/hendrycks_math_test.jsonl":  # the MATH-500 rows (same ids) and one other row per subject
        return math_rows(rows, named | in_math500, lambda r: (r["type"], r["unique_id"] in in_math500))
    if relative == "math/math500_test.jsonl":
        return {i for i, row in enumerate(rows) if row["unique_id"] in in_math500}
    if relative == "competition/aime24_test.jsonl":  # the 6 shortest lines: zero-padded answers ("025") and not
        return set(sorted(range(len(rows)), key=lambda i: (len(lines[i]), i))[:6])
    if relative == "competition/amc23_test.jsonl":  # the first 10 and the one negative answer (-1.0)
        return set(range(10)) | {i for i, row in enumerate(rows) if row["answer"] < 0}
    raise ValueError(f"no rule for {relative}")


def read(path: Path) -> tuple[list[bytes], list[dict]]:
    lines = path.read_bytes().splitlines(keepends=True)
    return lines, [json.loads(line) for line in lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the full data, laid out like shared/data")
    parser.add_argument("--output_dir", type=Path, default=HERE, help="where the subset goes")
    args = parser.parse_args()

    for relative, digest in SOURCES.items():
        if not (args.source / relative).is_file():
            raise SystemExit(f"{args.source / relative} not found: pass --source, a folder laid out like shared/data")
        actual = hashlib.sha256((args.source / relative).read_bytes()).hexdigest()
        if actual != digest:
            raise SystemExit(f"{args.source / relative}: sha256 {actual}, not {digest} (shared/data/PROVENANCE.md)")
    in_math500 = math500_ids(args.source)
    for relative in SOURCES:
        lines, rows = read(args.source / relative)
        chosen = sorted(choose(relative, rows, lines, in_math500))
        target = args.output_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"".join(lines[i] for i in chosen))
        print(f"{relative}: {len(chosen)} of {len(rows)} rows, {target.stat().st_size:,} bytes")
    write_countdown(args.output_dir)


def write_countdown(output_dir: Path) -> None:
    """Countdown in the hub's shape ({"nums", "target"}), from reson's own seeded generator: no copy of the hub's
    Jiayi-Pan/Countdown-Tasks-3to4 is at hand. Train and test are split as reson splits the hub's one split (a hash
    of the problem), and train ends with rows the loader must skip: no nums, a number that is not whole, no target."""
    from reson.core.countdown import problems

    bad = [{"target": 10}, {"nums": [3, 2.5, 4], "target": 10}, {"nums": [3, 4, 5]}]
    for split, n in (("train", 40), ("test", 20)):
        rows = [{"nums": row["nums"], "target": row["target"]} for row in problems(split, n, seed=0)]
        target = output_dir / "countdown" / f"{split}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(json.dumps(row) + "\n" for row in rows + (bad if split == "train" else [])))
        print(f"countdown/{split}.jsonl: {n} generated rows{' and 3 unusable ones' if split == 'train' else ''}")


if __name__ == "__main__":
    main()
