"""Output folders: what they hold, and the lock a run or evaluation takes on them."""

from __future__ import annotations

import pytest

from reson.core import folders


def test_a_refused_command_leaves_the_lock_file_naming_the_last_holder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / folders.TRAINER_STATE).write_text("{}")
    held = folders.claim(run, folders.TRAINING, "output_dir", resume=True)
    named = (run / folders.LOCK_FILE).read_text()
    held.release()
    assert "a training run" in named
    for kind, resume in ((folders.EVALUATION, True), (folders.TRAINING, False)):  # the wrong kind; no --resume
        with pytest.raises(folders.FolderError):
            folders.claim(run, kind, "--output_dir", resume=resume)
        assert (run / folders.LOCK_FILE).read_text() == named


def test_a_busy_folder_is_refused_naming_its_holder(tmp_path):
    held = folders.claim(tmp_path / "eval", folders.EVALUATION, "--output_dir", resume=True)
    try:
        with pytest.raises(folders.FolderError, match=r"in use by pid \d+ .*an evaluation"):
            folders.claim(tmp_path / "eval", folders.EVALUATION, "--output_dir", resume=True)
    finally:
        held.release()


def test_a_full_disk_is_told_in_each_writers_words():
    """Python's OSError, safetensors' error text and torch.save's zip writer (an iostream error, then "unexpected
    pos"), as each says it on a full tmpfs; other errors are not a full disk."""
    import errno

    assert folders.disk_full_error(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device"
    assert folders.disk_full_error(OSError(errno.EDQUOT, "Disk quota exceeded")) == "Disk quota exceeded"
    safetensors = RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert folders.disk_full_error(safetensors) == "No space left on device"
    torch_save = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    torch_save.__context__ = RuntimeError("basic_ios::clear: iostream error")  # raised while handling it
    assert folders.disk_full_error(torch_save) == "iostream error"
    assert folders.disk_full_error(OSError(errno.EACCES, "Permission denied")) is None
    assert folders.disk_full_error(ValueError("unexpected pos")) is None
