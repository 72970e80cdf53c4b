"""Reports of the workflow commands: one Markdown file for people, one JSON file for programs.

`reports/<name>.md` and `reports/<name>.json` are written atomically (a temporary
file, then a rename), so a report is never half-written.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

from core.errors import UsageError
from core.record import write_json

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_report_name(name: str) -> str:
    """A report name is a plain file name: letters, digits, `.`, `_`, `-`."""
    if not NAME.match(name) or name.endswith((".md", ".json")):
        raise UsageError(f"report name {name!r} must be a plain name (letters, digits, '.', '_', '-'), "
                         "without a folder or an extension; use --out for the folder")
    return name


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; `|` inside cells is escaped."""
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(out_dir: str | Path, name: str, markdown: str, data: dict[str, Any]) -> tuple[Path, Path]:
    """Write `<out_dir>/<name>.md` and `<name>.json`; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / f"{check_report_name(name)}.md", out / f"{name}.json"
    tmp = md.with_name(f".{md.name}.tmp")
    tmp.write_text(markdown if markdown.endswith("\n") else markdown + "\n")
    os.replace(tmp, md)
    write_json(js, data)
    return md, js


def format_seconds(seconds: float) -> str:
    """`42 s`, `12 min 05 s`, `1 h 02 min`."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
