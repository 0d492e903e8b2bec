"""What the `reson` commands share: each option's default said once by the help formatter, and stdout kept for
what a command prints itself."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Says each option's default, when it has one (not None, and not a flag's False)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


@contextlib.contextmanager
def own_stdout() -> Iterator:
    """Yield this process's stdout for what the command prints itself, and send anything else printed meanwhile to
    stderr: the libraries' chatter (transformers prints a line on importing its integrations when WANDB_MODE is
    offline), which would break output meant for programs (`reson plan --json`, `reson train --check`)."""
    out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        yield out
