"""How the benchmarks report: the command that ran, and a section of BENCHMARKS.md."""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The command as a reader would type it again."""
    return shlex.join(
        [".venv/bin/python", "-m", module, *(argv if argv is not None else sys.argv[1:])]
    )


def publish(text: str, path: Path | None, section: str) -> None:
    """Print `text`, and put it in `path` between that section's markers."""
    print(text)
    if path is not None:
        write_section(path, section, text)


def write_section(path: Path, name: str, text: str) -> None:
    """Replace the text between `<!-- name:begin -->` and `<!-- name:end -->` in `path`."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{begin}\n{text}\n{end}"
    if begin in current and end in current:
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        updated = pattern.sub(lambda _: block, current)
    else:
        updated = current.rstrip() + "\n\n" + block + "\n"
    path.write_text(updated, encoding="utf-8")
