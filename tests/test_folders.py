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
