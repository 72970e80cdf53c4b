"""One readable message and a non-zero exit for user mistakes; tracebacks only for bugs."""
from __future__ import annotations

import signal
import sys
from typing import Callable

from core.errors import HarnessError


def _sigterm_as_interrupt(signum, frame):
    # `kill` should leave an `interrupted` record, as Ctrl-C does.
    raise KeyboardInterrupt(f"signal {signum}")


def run_command(fn: Callable[[], int | None]) -> int:
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        return int(fn() or 0)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        from core.record import describe_error, is_disk_full

        if not is_disk_full(e):
            raise
        print(f"error: {describe_error(e)}", file=sys.stderr)  # the machine's trouble, not a bug: one line
        return 4
