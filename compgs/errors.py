"""Exceptions a user can act on.

Every error the library raises on bad input derives from `CompgsError` and
carries a one-line message that names the file or value at fault; the CLI
prints that line and exits non-zero (see `compgs.cli.main`).
"""


class CompgsError(Exception):
    """Base class: bad input or state that the user can fix."""


class InputError(CompgsError, ValueError):
    """A bad argument, path, flag or in-memory value."""


class CorruptFileError(CompgsError):
    """A file is truncated, corrupted, or inconsistent with its own header."""


class UnsupportedFormatError(CompgsError):
    """A file is valid but in a format or version the project cannot handle."""


def check_port(port: int, what: str = "--port") -> int:
    """A TCP port number (0: any free port) or an InputError naming the flag."""
    if not 0 <= port <= 65535:
        raise InputError(f"{what} {port}: a TCP port is 0..65535")
    return port
