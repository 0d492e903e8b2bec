"""What every `reson` command's ``--help`` shares: each option's default, said once by the formatter."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Says each option's default, when it has one (not None, and not a flag's False)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)
