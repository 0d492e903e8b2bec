"""Fault injection: kill, tear, collide and diverge real `reson train` and `reson eval` processes, and check that no
work already written is lost.

    python bench/bench_faults.py [--data_dir ../shared/data] [--work_dir /tmp/reson-faults]

Every scenario runs the real command line in its own processes, on a tiny random Qwen2 model built here and GSM8K
rows from the shared data:

- SIGKILL mid-training, then `--resume`: every step logged once, every canary step's records complete.
- a torn newest checkpoint (its trainer_state.json cut in half and its weights truncated, as a kill while saving
  leaves them), then `--resume`: the previous complete checkpoint is used.
- SIGKILL mid-evaluation, then the same command: the same samples and results as an evaluation never interrupted.
- a damaged line in the middle of an unfinished samples.jsonl: that one record is generated again, the rest kept.
- two trainings, and two evaluations, into one folder at once: the second stops naming the first, which finishes.
- training into a finished run's folder, evaluating into a training folder: refused, the folder byte for byte the same.
- learning rate 1e10: one line, exit 1, and every checkpoint kept holds weights of the starting scale.
- SIGTERM at 20 random moments of 20 runs, each then `--resume`: each ends with the uninterrupted run's weights, bit
  for bit; a second SIGTERM right after the first ends the process at once, and `--resume` still finishes.
- a full disk, made for real (the run folder on a tmpfs that holds one checkpoint, not two; root needed to mount it):
  one line, the partial checkpoint gone, the last one whole; the tmpfs grown, `--resume` finishes.
- CUDA out of memory injected into a real process's generation: one line, no traceback; `--resume` finishes.
- bad rows (no gold, a damaged line, a line that is not UTF-8) skipped and named; an empty file refused in one line.

Prints one row per scenario (scenario, expected, seen, data lost) as a markdown table, the one in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}


def reson(*args) -> list[str]:
    return [sys.executable, "-m", "reson", *map(str, args)]


def build_model(work: Path, data_dir: Path) -> Path:
    from reson.core.data import format_prompt
    from reson.miniature.tiny_model import save_tiny_model

    rows = [json.loads(line) for line in (data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[:300]]
    texts = [format_prompt(r["question"]) + " <think>" + r["answer"] + "</think> <answer>1</answer>" for r in rows]
    return save_tiny_model(work / "model", texts, seed=0)


def recipe(work: Path, name: str, model: Path, data_dir: Path, **changes) -> Path:
    """The CPU recipe shrunk to seconds a step: 2 prompts x 4 completions of 12 tokens, GSM8K rows."""
    from reson.core.config import recipe_path

    values = yaml.safe_load(recipe_path("grpo_cpu_tiny").read_text())
    values.update(
        model_name_or_path=str(model),
        output_dir=str(work / name),
        datasets=[{"name": "gsm8k", "split": "train"}],
        data_dir=str(data_dir),
        canary_dataset="gsm8k",
        num_train_problems=32,
        num_canaries=4,
        num_generations=4,
        per_device_train_batch_size=8,
        max_completion_length=12,
        emergence_every=2,
        save_steps=2,
        save_total_limit=None,
        logging_steps=1,
        max_steps=6,
        disable_tqdm=True,
        report_to="none",
    )
    values.update(changes)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def checkpoints(folder: Path) -> list[str]:
    return sorted((p.name for p in folder.glob("checkpoint-*")), key=lambda n: int(n.split("-")[1]))


def wait_for(test, process: subprocess.Popen | None = None, seconds: float = 300) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if test():
            return True
        if process is not None and process.poll() is not None:
            return test()
        time.sleep(0.02)
    return False


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ".reson.lock"):
        h.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return h.hexdigest()


def logged_steps(folder: Path) -> list[int]:
    state = json.loads((folder / "trainer_state.json").read_text())
    return [entry["step"] for entry in state["log_history"] if "loss" in entry]


def canary_counts(folder: Path) -> dict[int, int]:
    counts: dict[int, int] = {}
    for line in (folder / "emergence.jsonl").read_text().splitlines():
        step = json.loads(line)["step"]
        counts[step] = counts.get(step, 0) + 1
    return counts


def complete_run(folder: Path, steps: int = 6, canaries: int = 4) -> str:
    """'' when the run logged each step once and each canary step's records once, else what is wrong."""
    problems = []
    if logged_steps(folder) != list(range(1, steps + 1)):
        problems.append(f"steps logged {logged_steps(folder)}")
    expected = {s: canaries for s in range(0, steps + 1, 2)}
    if canary_counts(folder) != expected:
        problems.append(f"canary records {canary_counts(folder)}")
    if not (folder / "model.safetensors").is_file():
        problems.append("no final model")
    return "; ".join(problems)


# ---------------------------------------------------------------------------------------------------------------------
# Scenarios: each returns (expected, seen, lost)


def kill_mid_training(work: Path, model: Path, data_dir: Path) -> tuple[str, str, str]:
    config = recipe(work, "killed", model, data_dir)
    first = subprocess.Popen(
        reson("train", "--config", config), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    wait_for(lambda: "checkpoint-2" in checkpoints(work / "killed"), first)
    first.send_signal(signal.SIGKILL)
    first.wait()
    at_kill = checkpoints(work / "killed")
    resumed = subprocess.run(reson("train", "--config", config, "--resume"), env=ENV, capture_output=True, text=True)
    problems = complete_run(work / "killed") if resumed.returncode == 0 else f"exit {resumed.returncode}"
    seen = f"killed with {', '.join(at_kill)}; resumed to step 6, exit {resumed.returncode}"
    return "resume from the newest checkpoint; each step and canary step logged once", seen, problems or "nothing"


def torn_checkpoint(work: Path, model: Path, data_dir: Path) -> tuple[str, str, str]:
    config = recipe(work, "torn", model, data_dir, max_steps=4)
    first = subprocess.run(reson("train", "--config", config), env=ENV, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    folder = work / "torn"
    for name in ("trainer_state.json", "model.safetensors"):  # back to the folder as step 4 was being saved
        (folder / name).unlink()
    lines = (folder / "checkpoint-4" / "trainer_state.json").read_text()
    (folder / "checkpoint-4" / "trainer_state.json").write_text(lines[: len(lines) // 2])
    weights = folder / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    good = digest(folder / "checkpoint-2")
    resumed = subprocess.run(
        reson("train", "--config", config, "--resume", "--max_steps", 6), env=ENV, capture_output=True, text=True
    )
    passed_over = "checkpoint-4" in resumed.stderr and "checkpoint-2" in resumed.stderr
    state = json.loads((folder / "trainer_state.json").read_text()) if resumed.returncode == 0 else {}
    source = "checkpoint-2" if passed_over else "?"
    seen = f"exit {resumed.returncode}, resumed from {source}, step {state.get('global_step')}"
    lost = "nothing" if resumed.returncode == 0 and state.get("global_step") == 6 else "the run"
    if digest(folder / "checkpoint-2") != good:
        lost = "checkpoint-2 changed"
    return "pass over the torn checkpoint-4, resume from checkpoint-2", seen, lost


def eval_command(model: Path, data_dir: Path, folder: Path, problems: int = 24) -> list[str]:
    data = data_dir / "gsm8k" / "test.jsonl"
    return reson(
        "eval", "--model_name_or_path", model, "--datasets", data, "--num_problems", problems,
        "--max_completion_length", 24, "--batch_size", 2, "--output_dir", folder, "--no_progress",
    )  # fmt: skip


def samples(folder: Path) -> dict[tuple, str]:
    rows = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines() if line.strip()]
    return {(r["id"], r["sample_index"]): r["completion"] for r in rows}


def kill_eval_after(model: Path, data_dir: Path, folder: Path, num_samples: int) -> None:
    """Start an evaluation into `folder` and SIGKILL it once `num_samples` samples are written."""
    first = subprocess.Popen(
        eval_command(model, data_dir, folder), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    wait_for(lambda: (folder / "samples.jsonl").is_file() and len(samples(folder)) >= num_samples, first)
    first.send_signal(signal.SIGKILL)
    first.wait()


def kill_mid_eval(work: Path, model: Path, data_dir: Path, reference: Path) -> tuple[str, str, str]:
    folder = work / "eval_killed"
    kill_eval_after(model, data_dir, folder, 8)
    kept = len(samples(folder))
    rerun = subprocess.run(eval_command(model, data_dir, folder), env=ENV, capture_output=True, text=True)
    same = samples(folder) == samples(reference)
    metrics = lambda f: json.loads((f / "results.json").read_text())["datasets"]  # noqa: E731
    same_results = rerun.returncode == 0 and metrics(folder) == metrics(reference)
    verdict = "identical" if same and same_results else "DIFFERENT"
    seen = f"{kept} of 24 samples at the kill; rerun exit {rerun.returncode}, samples and results {verdict}"
    return (
        "the rerun finishes with the uninterrupted run's samples and results",
        seen,
        "nothing" if same and same_results else "results differ",
    )


def damaged_line(work: Path, model: Path, data_dir: Path, reference: Path) -> tuple[str, str, str]:
    folder = work / "eval_damaged"
    kill_eval_after(model, data_dir, folder, 12)
    lines = (folder / "samples.jsonl").read_text().splitlines(keepends=True)
    lines[4] = '{"id": "gsm8k/test/' + "\x00" * 3 + "\n"  # a damaged line in the middle
    (folder / "samples.jsonl").write_text("".join(lines))
    intact = len(lines) - 1
    rerun = subprocess.run(eval_command(model, data_dir, folder), env=ENV, capture_output=True, text=True)
    results = json.loads((folder / "results.json").read_text()) if rerun.returncode == 0 else {}
    generated = results.get("throughput", {}).get("samples_generated")
    same = samples(folder) == samples(reference)
    verdict = "identical" if same else "DIFFERENT"
    seen = f"{intact} intact lines kept, {generated} generated (24 - {intact}); samples {verdict}"
    return (
        "skip the damaged line, keep every other record",
        seen,
        "nothing" if same and generated == 24 - intact else "records",
    )


def two_trainings(work: Path, model: Path, data_dir: Path) -> tuple[str, str, str]:
    config = recipe(work, "busy", model, data_dir)
    first = subprocess.Popen(
        reson("train", "--config", config), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    wait_for(lambda: (work / "busy" / "train_config.yaml").is_file(), first)
    second = subprocess.run(reson("train", "--config", config, "--resume"), env=ENV, capture_output=True, text=True)
    first.wait()
    line = second.stderr.strip().splitlines()[-1] if second.stderr.strip() else ""
    named = f"pid {first.pid}" in line
    problems = complete_run(work / "busy") if first.returncode == 0 else f"first exit {first.returncode}"
    said = "names the first" if named else repr(line[:80])
    seen = f"second: exit {second.returncode}, {said}; first: exit {first.returncode}"
    return "the second stops naming the first; the first finishes whole", seen, problems or "nothing"


def two_evaluations(work: Path, model: Path, data_dir: Path, reference: Path) -> tuple[str, str, str]:
    folder = work / "eval_busy"
    first = subprocess.Popen(
        eval_command(model, data_dir, folder), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    wait_for(lambda: (folder / "run.json").is_file(), first)
    second = subprocess.run(eval_command(model, data_dir, folder), env=ENV, capture_output=True, text=True)
    first.wait()
    named = f"pid {first.pid}" in second.stderr
    lines = (folder / "samples.jsonl").read_text().splitlines()
    same = samples(folder) == samples(reference) and len(lines) == 24
    said = "names the first" if named else "does not name it"
    seen = f"second: exit {second.returncode}, {said}; {len(lines)} lines for 24 samples"
    return "the second stops naming the first; one line per sample", seen, "nothing" if same else "records"


def refused_folders(work: Path, model: Path, data_dir: Path, reference: Path) -> tuple[str, str, str]:
    finished = work / "torn"  # a finished run by now
    before = digest(finished), digest(reference)
    config = recipe(work, "torn", model, data_dir)
    train = subprocess.run(reson("train", "--config", config), env=ENV, capture_output=True, text=True)
    evaluate = subprocess.run(eval_command(model, data_dir, finished), env=ENV, capture_output=True, text=True)
    into_eval = subprocess.run(
        reson("train", "--config", config, "--output_dir", reference), env=ENV, capture_output=True, text=True
    )
    codes = (train.returncode, evaluate.returncode, into_eval.returncode)
    same = (digest(finished), digest(reference)) == before
    seen = f"exit codes {codes}; folders {'byte for byte the same' if same else 'CHANGED'}"
    return (
        "train into a finished run, eval into it, train into an eval: each refused",
        seen,
        "nothing" if same and codes == (2, 2, 2) else "files",
    )


def divergence(work: Path, model: Path, data_dir: Path) -> tuple[str, str, str]:
    from safetensors.torch import load_file

    config = recipe(work, "diverged", model, data_dir, learning_rate=1e10, save_steps=1, num_canaries=0)
    run = subprocess.run(reson("train", "--config", config), env=ENV, capture_output=True, text=True)
    line = run.stderr.strip().splitlines()[-1]
    start = max(float(w.abs().max()) for w in load_file(model / "model.safetensors").values())
    kept = checkpoints(work / "diverged")
    scales = [
        max(float(w.abs().max()) for w in load_file(work / "diverged" / c / "model.safetensors").values())
        for c in kept
    ]
    sane = all(scale < 100 * start for scale in scales)
    largest = max(scales, default=start)
    seen = f"exit {run.returncode}: {line[:90]}...; kept {', '.join(kept) or 'no checkpoint'}, largest weight "
    seen += f"{largest:.2g} (start {start:.2g})"
    return (
        "one line, exit 1, no checkpoint of exploded weights",
        seen,
        "nothing" if run.returncode == 1 and sane else "a bad checkpoint kept",
    )


# ---------------------------------------------------------------------------------------------------------------------
# What rented GPUs do: preemption, a full disk, running out of memory; and bad rows in real data


def final_weights(folder: Path) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def sigterms(work: Path, model: Path, data_dir: Path, trials: int = 20, seed: int = 0) -> tuple[str, str, str]:
    """`trials` runs, each sent SIGTERM at a random moment of its life (starting up, loading, generating, stepping,
    saving), then resumed with --resume where it did not finish: each must end with the uninterrupted run's weights,
    bit for bit, every step and canary step logged once."""
    import collections
    import random

    reference = recipe(work, "sigterm_reference", model, data_dir, save_steps=100)
    start = time.perf_counter()
    done = subprocess.run(reson("train", "--config", reference), env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    length, expected = time.perf_counter() - start, final_weights(work / "sigterm_reference")
    rng = random.Random(seed)
    codes, same, resumes, failures = collections.Counter(), 0, [], []
    for trial in range(trials):
        config = recipe(work, f"sigterm_{trial}", model, data_dir, save_steps=100)
        process = subprocess.Popen(
            reson("train", "--config", config), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.2, length))
        process.send_signal(signal.SIGTERM)
        code = process.wait()
        codes[code] += 1
        if not (work / f"sigterm_{trial}" / "model.safetensors").is_file():  # not finished: resume it
            start = time.perf_counter()
            resumed = subprocess.run(
                reson("train", "--config", config, "--resume"), env=ENV, capture_output=True, text=True
            )
            resumes.append(time.perf_counter() - start)
            if resumed.returncode != 0:
                failures.append(f"trial {trial}: first exit {code}, --resume exit {resumed.returncode}")
                continue
        problems = complete_run(work / f"sigterm_{trial}")
        if problems or final_weights(work / f"sigterm_{trial}") != expected:
            failures.append(f"trial {trial}: first exit {code}, {problems or 'other weights'}")
        else:
            same += 1
    seen = (
        f"{codes[143]} stopped after saving their step (exit 143), {codes[-signal.SIGTERM]} killed while Python "
        f"started (before reson runs: nothing written), {codes[0]} finished before the signal"
        + (
            f", other exits {dict(c for c in codes.items() if c[0] not in (0, 143, -signal.SIGTERM))}"
            if set(codes) - {0, 143, -signal.SIGTERM}
            else ""
        )
        + f"; {same} of {trials} end with the reference's weights bit for bit; resuming {len(resumes)} took "
        f"{min(resumes, default=0):.1f}-{max(resumes, default=0):.1f} s (a run: {length:.1f} s)"
        + (f"; {'; '.join(failures)}" if failures else "")
    )
    return "each ends with the uninterrupted run's weights", seen, "nothing" if same == trials else "weights differ"


def second_sigterm(work: Path, model: Path, data_dir: Path) -> tuple[str, str, str]:
    config = recipe(work, "sigterm_twice", model, data_dir, save_steps=1)
    process = subprocess.Popen(
        reson("train", "--config", config), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(lambda: "checkpoint-2" in checkpoints(work / "sigterm_twice"), process)
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGTERM)
    code = process.wait()
    resumed = subprocess.run(reson("train", "--config", config, "--resume"), env=ENV, capture_output=True, text=True)
    problems = complete_run(work / "sigterm_twice") if resumed.returncode == 0 else f"resume exit {resumed.returncode}"
    seen = f"exit {code} at once; --resume: exit {resumed.returncode}"
    return "the second signal ends the process at once; --resume still finishes", seen, problems or "nothing"


def full_disk(work: Path, model: Path, data_dir: Path) -> tuple[str, str, str]:
    """A real full disk: the run folder on a tmpfs that holds one checkpoint and not the second; then the tmpfs is
    grown (space freed) and the run resumed."""
    folder = work / "disk"
    folder.mkdir()
    probe = recipe(work, "disk_probe", model, data_dir, max_steps=2, save_steps=2)
    subprocess.run(reson("train", "--config", probe), env=ENV, capture_output=True, check=True)
    size = sum(p.stat().st_size for p in (work / "disk_probe" / "checkpoint-2").iterdir())
    small = int(size * 1.7) // 1024 + 64  # KiB: the first checkpoint, its logs, not a second checkpoint
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={small}k", "tmpfs", str(folder)], check=True)
    try:
        config = recipe(work, "disk/run", model, data_dir, max_steps=6, save_steps=2, num_canaries=0)
        first = subprocess.run(reson("train", "--config", config), env=ENV, capture_output=True, text=True)
        line = first.stderr.strip().splitlines()[-1] if first.stderr.strip() else ""
        kept = checkpoints(folder / "run")
        whole = all((folder / "run" / c / "trainer_state.json").is_file() for c in kept)
        subprocess.run(["mount", "-o", f"remount,size={small * 8}k", str(folder)], check=True)
        start = time.perf_counter()
        resumed = subprocess.run(
            reson("train", "--config", config, "--resume"), env=ENV, capture_output=True, text=True
        )
        seconds = time.perf_counter() - start
        state = json.loads((folder / "run" / "trainer_state.json").read_text()) if resumed.returncode == 0 else {}
    finally:
        subprocess.run(["umount", str(folder)], check=False)
    said = "one line naming the folder and the free space" if "is full" in line and "GB free" in line else repr(line)
    seen = (
        f"tmpfs of {small} KiB: exit {first.returncode}, {said}; kept {', '.join(kept)} "
        f"({'complete' if whole else 'INCOMPLETE'}); after growing it, --resume: exit {resumed.returncode}, step "
        f"{state.get('global_step')} in {seconds:.1f} s"
    )
    ok = first.returncode == 1 and whole and state.get("global_step") == 6
    return "the partial checkpoint removed, the last one whole; --resume finishes", seen, "nothing" if ok else "work"


OOM_AT_STEP_3 = """
import sys, torch, trl
original = trl.GRPOTrainer._generate
def generate(self, prompts):
    if self.state.global_step == 2:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")
    return original(self, prompts)
trl.GRPOTrainer._generate = generate
from reson.cli import main
sys.exit(main(sys.argv[1:]))
"""


def out_of_memory(work: Path, model: Path, data_dir: Path) -> tuple[str, str, str]:
    """torch.OutOfMemoryError injected into the generation of step 3 of a real process (the CPU has no CUDA)."""
    config = recipe(work, "oom", model, data_dir, save_steps=2)
    first = subprocess.run(
        [sys.executable, "-c", OOM_AT_STEP_3, "train", "--config", str(config)],
        env=ENV,
        capture_output=True,
        text=True,
    )
    lines = first.stderr.strip().splitlines()
    said = lines[-1] if lines else ""
    traceback = any("Traceback" in line for line in lines)
    kept = checkpoints(work / "oom")
    resumed = subprocess.run(reson("train", "--config", config, "--resume"), env=ENV, capture_output=True, text=True)
    problems = complete_run(work / "oom") if resumed.returncode == 0 else f"resume exit {resumed.returncode}"
    one_line = said.startswith("reson train: out of GPU memory in generation at step 3") and not traceback
    seen = f"exit {first.returncode}, {'one line, no traceback' if one_line else repr(said[:80])}; kept "
    seen += f"{', '.join(kept)}; --resume: exit {resumed.returncode}"
    return "one line naming the phase and step; --resume finishes", seen, problems or "nothing"


def bad_rows(work: Path, model: Path, data_dir: Path) -> tuple[str, str, str]:
    """A GSM8K file with a row without '####', a damaged line and a line that is not UTF-8; an empty file."""
    rows = (data_dir / "gsm8k" / "train.jsonl").read_bytes().splitlines(keepends=True)[:40]
    broken = work / "broken_train.jsonl"
    no_gold = json.dumps({"question": "How many?", "answer": "no marker"}).encode() + b"\n"
    broken.write_bytes(b"".join(rows[:10]) + no_gold + b'{"question": \n' + b"\xff\xfe\n" + b"".join(rows[10:]))
    empty = work / "empty_train.jsonl"
    empty.write_text("")
    config = recipe(work, "bad_rows", model, data_dir, datasets=[{"name": str(broken)}], max_steps=2)
    run = subprocess.run(reson("train", "--config", config), env=ENV, capture_output=True, text=True)
    named = "line 11" in run.stderr and "line 12, line 13" in run.stderr
    refused = subprocess.run(
        reson("train", "--config", config, "--datasets", str(empty), "--output_dir", work / "empty_run"),
        env=ENV,
        capture_output=True,
        text=True,
    )
    line = refused.stderr.strip().splitlines()[-1] if refused.stderr.strip() else ""
    seen = f"3 bad rows: exit {run.returncode}, {'each skipped and named by line' if named else 'NOT named'}; "
    seen += f"empty file: exit {refused.returncode}, {'one line' if 'has no rows' in line else repr(line[:60])}"
    ok = run.returncode == 0 and named and refused.returncode == 2 and "Traceback" not in refused.stderr
    return "skipped and named, or refused in one line", seen, "nothing" if ok else "rows"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work_dir", type=Path, default=Path("/tmp/reson-faults"))
    args = parser.parse_args()
    shutil.rmtree(args.work_dir, ignore_errors=True)
    args.work_dir.mkdir(parents=True)
    work, data = args.work_dir, args.data_dir
    model = build_model(work, data)
    reference = work / "eval_reference"
    subprocess.run(eval_command(model, data, reference), env=ENV, check=True, capture_output=True)

    scenarios = [
        ("SIGKILL mid-training, then --resume", lambda: kill_mid_training(work, model, data)),
        ("torn newest checkpoint, then --resume", lambda: torn_checkpoint(work, model, data)),
        ("SIGKILL mid-evaluation, then the same command", lambda: kill_mid_eval(work, model, data, reference)),
        ("damaged line in an unfinished samples.jsonl", lambda: damaged_line(work, model, data, reference)),
        ("two trainings into one folder", lambda: two_trainings(work, model, data)),
        ("two evaluations into one folder", lambda: two_evaluations(work, model, data, reference)),
        ("work into a folder holding other work", lambda: refused_folders(work, model, data, reference)),
        ("learning rate 1e10 (divergence)", lambda: divergence(work, model, data)),
        ("20 SIGTERMs at random points, each then --resume", lambda: sigterms(work, model, data)),
        ("a second SIGTERM right after the first", lambda: second_sigterm(work, model, data)),
        ("a full disk (tmpfs) while saving, then space freed", lambda: full_disk(work, model, data)),
        ("CUDA out of memory in generation (injected)", lambda: out_of_memory(work, model, data)),
        ("bad rows: no gold, damaged, not UTF-8; an empty file", lambda: bad_rows(work, model, data)),
    ]
    print("| scenario | expected | seen | data lost | seconds |")
    print("|---|---|---|---|---:|")
    failed = 0
    for name, scenario in scenarios:
        start = time.perf_counter()
        expected, seen, lost = scenario()
        failed += lost != "nothing"
        print(f"| {name} | {expected} | {seen} | {lost} | {time.perf_counter() - start:.0f} |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
