"""The README's command table lists exactly the commands and options of `shipper --help`."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from shipper.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"
COMMON = {"-h", "--help", "-c", "--config", "--set", "--log-format", "--log-level"}


def help_text(*command: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    return out.getvalue()


def listed(text: str) -> list[str]:
    """The COMMAND/ACTION names under "positional arguments" of an argparse help."""
    block = text.split("positional arguments:", 1)[1].split("options:", 1)[0]
    return re.findall(r"^    (\w+)\s", block, flags=re.M)


def commands() -> dict[str, set[str]]:
    """Every command as `shipper run`, `shipper rules lint`, ... -> its own long options."""
    found: dict[str, set[str]] = {}
    for name in listed(help_text()):
        actions = listed(help_text(name)) if "ACTION" in help_text(name).split("options:", 1)[0] else []
        for words in ([name, action] for action in actions) if actions else [[name]]:
            options = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", help_text(*words).split("options:", 1)[1]))
            found["shipper " + " ".join(words)] = options - COMMON
    return found


def readme_table() -> dict[str, str]:
    rows = re.findall(r"^\| `(shipper [^`]*)` \|", README.read_text(), flags=re.M)
    table = {}
    for row in rows:
        words = [w for w in row.split() if re.fullmatch(r"[a-z]+", w)]
        table[" ".join(words)] = row
    return table


def test_every_command_is_in_the_readme_and_nothing_else():
    assert set(commands()) == set(readme_table())


def test_every_option_of_a_command_is_in_its_readme_row():
    table = readme_table()
    for command, options in commands().items():
        missing = {option for option in options if option not in table[command]}
        assert not missing, f"README row for {command} lacks {sorted(missing)}"


def test_the_parser_has_the_commands_the_issue_named():
    assert {"shipper kibana generate", "shipper setup", "shipper audit", "shipper rules lint", "shipper rules test",
            "shipper spool status", "shipper spool replay", "shipper config check"} <= set(commands())
    assert "--kibana" in commands()["shipper setup"]

