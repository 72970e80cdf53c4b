"""Errors a user can fix. The CLI prints their message (no traceback) and exits non-zero."""


class HarnessError(Exception):
    """A user-facing failure: bad input, missing credential, unreachable service."""

    exit_code = 1


class UsageError(HarnessError):
    """Bad command-line or spec input; nothing was run or written."""

    exit_code = 2
