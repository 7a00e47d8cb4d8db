"""Every `robustad ...` command in a code block of README.md and BENCHMARKS.md parses with today's CLI.

Parsing only (nothing runs): a renamed or removed option, or a wrong choice, fails here rather than
for a user who copies the command.
"""

import re
import shlex
from pathlib import Path

import pytest

from robustad.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PREFIXES = ("OMP_NUM_THREADS=2 ", ".venv/bin/robustad ")


def documented_commands(text: str) -> list[str]:
    commands = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            for prefix in PREFIXES:
                line = line.removeprefix(prefix)
            # torchrun's own options, up to the module or program it launches
            line = re.sub(r"^torchrun .*?(?:-m robustad|--no-python \S*robustad) ", "robustad ", line)
            if line.startswith("robustad "):
                commands.append(line)
    return commands


@pytest.mark.parametrize("doc", ["README.md", "BENCHMARKS.md"])
def test_documented_commands_parse(doc):
    commands = documented_commands((ROOT / doc).read_text())
    assert len(commands) >= 5
    parser = build_parser()
    bad = []
    for command in commands:
        try:
            parser.parse_args(shlex.split(command, comments=True)[1:])
        except SystemExit:
            bad.append(command)
    assert not bad, f"{doc} documents commands the CLI rejects: {bad}"


def test_a_command_with_a_removed_option_is_caught():
    (command,) = documented_commands("```bash\nrobustad train --data mnist --normal-class 3 --epochs 5 --out r\n```")
    with pytest.raises(SystemExit):
        build_parser().parse_args(shlex.split(command)[1:])
