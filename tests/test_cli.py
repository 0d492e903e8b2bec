"""The `reson` dispatcher: every listed command resolves to a module with a `main`, and bad names fail clearly."""

from __future__ import annotations

import importlib

import pytest

from reson.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (_, summary) in COMMANDS.items():
        assert f"{name}  " in out and summary in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_a_main(name):
    module = importlib.import_module(COMMANDS[name][0])
    assert callable(module.main)


def test_unknown_command_names_the_valid_ones(capsys):
    assert main(["trian"]) == 2
    err = capsys.readouterr().err
    assert "'trian'" in err and "train" in err


def test_help_shows_zero_defaults_and_hides_absent_ones():
    import argparse

    from reson.core.help import HelpFormatter

    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="seed")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    parser.add_argument("--limit", type=int, default=None, help="a limit")
    parser.add_argument("--quiet", action="store_true", help="less output")
    text = " ".join(parser.format_help().split())
    assert "seed (default: 0)" in text and "0 is greedy (default: 0.0)" in text
    assert "a limit (default" not in text and "less output (default" not in text


def test_version_and_a_bare_command(capsys):
    from importlib.metadata import version

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"reson {version('reson-llm')}"
    assert main([]) == 2  # nothing asked: the usage, as an error
    assert "usage: reson <command>" in capsys.readouterr().err
