"""`run.py bundle|push|status|pull PLATFORM ...`: handed to the platform's adapter module.

Each adapter parses its own arguments (`adapters/<platform>.py`, `cli_<command>(argv)`),
so a platform's options live with the platform.
"""
from __future__ import annotations

from adapters import PLATFORMS, platform_command
from core.errors import UsageError


def main(command: str, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: run.py {command} PLATFORM [options]   (PLATFORM: {', '.join(sorted(PLATFORMS))})\n"
              f"       run.py {command} PLATFORM --help")
        if not argv:
            raise UsageError(f"'{command}' needs a platform")
        return 0
    return platform_command(argv[0], command)(argv[1:])
