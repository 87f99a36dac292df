"""The one exit-code table of the CLI and the errors that map onto it.

Every expected failure is raised as a :class:`FraudctlError` subclass carrying a
one-line message that names the cause and the fix; the CLI boundary turns it into
that message and the matching exit status.  Anything else is a bug (exit 1).
"""

from __future__ import annotations

import errno
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    BUG = 1
    USAGE = 2
    BACKEND_UNAVAILABLE = 3
    REFUSED = 4
    INTERRUPTED = 130


EXIT_CODE_HELP = (
    "Exit codes: 0 ok · 1 bug · 2 usage or config error · 3 backend unavailable · "
    "4 a check or gate said no · 130 interrupted."
)


class FraudctlError(Exception):
    """An expected failure with a message fit for the user."""

    exit_code: ExitCode = ExitCode.BUG

    def __init__(
        self, message: str, *, hint: str | None = None, details: dict[str, object] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # With --json, printed beside the error (e.g. what a long command did before it).
        self.details = details

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class UsageError(FraudctlError):
    """Bad arguments, bad input format or an invalid configuration value."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """A configuration value is missing or not allowed."""


class BackendUnavailable(FraudctlError):
    """A service the command needs cannot be reached or refused the work."""

    exit_code = ExitCode.BACKEND_UNAVAILABLE


class Refused(FraudctlError):
    """A check or gate evaluated and said no."""

    exit_code = ExitCode.REFUSED


_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def storage_error(exc: OSError) -> FraudctlError | None:
    """The local disk refusing the work (full, read-only, no permission) as the failure
    of a backend, naming the file and the fix; None for any other OSError."""
    where = exc.filename if exc.filename is not None else "a file under the fraudctl home"
    if exc.errno in _NO_ROOM:
        return BackendUnavailable(
            f"no space left for {where} ({exc.strerror})",
            hint="free space on that disk, or set FRAUDCTL_HOME to a disk with room; what "
            "was acknowledged or committed before is kept, so a rerun continues",
        )
    if exc.errno in _NOT_WRITABLE:
        return BackendUnavailable(
            f"cannot write {where} ({exc.strerror})",
            hint="make it writable, or set FRAUDCTL_HOME (or --home) to a writable directory",
        )
    return None
