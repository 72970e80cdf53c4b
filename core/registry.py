"""Name -> implementation, imported only when asked for (MLflow's tracking-store registry).

Every registry of the harness has this one shape: platforms (`adapters`), commands
(`run.py`), the platform commands (`cli/remote.py`) and the record loaders
(`results.loaders`). An unknown name is a UsageError that lists the valid ones.
"""
from __future__ import annotations

import importlib
from typing import Any, Iterator

from core.errors import UsageError


class Registry:
    """`kind` names what is registered ("platform"); `entries` map a name to "module:attribute"."""

    def __init__(self, kind: str, entries: dict[str, str], help: dict[str, str] | None = None):
        self.kind = kind
        self.entries = dict(entries)
        self.help = dict(help or {})

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def names(self) -> list[str]:
        return sorted(self.entries)

    def load(self, name: str) -> Any:
        """The registered object; UsageError for an unknown name, or one whose module is not in this checkout."""
        if name not in self.entries:
            raise UsageError(f"unknown {self.kind} {name!r}; valid {self.kind}s are: {', '.join(self.names())}")
        module, _, attribute = self.entries[name].partition(":")
        try:
            return getattr(importlib.import_module(module), attribute)
        except ModuleNotFoundError as e:
            if e.name == module:
                raise UsageError(f"{self.kind} {name!r} is not built yet in this checkout") from None
            raise
