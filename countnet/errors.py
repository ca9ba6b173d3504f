"""The one error type users see: its message is printed as a single line, no traceback."""


class CountnetError(Exception):
    """Bad input or an unrecoverable condition the user can act on."""


# What `countnet` reports in one line instead of a traceback: its own errors, and the
# operating system's about a path the user gave.
USER_ERRORS = (CountnetError, FileNotFoundError, PermissionError, IsADirectoryError,
               NotADirectoryError)  # fmt: skip


def one_line(error: BaseException) -> str:
    """The line a user error is reported with."""
    if isinstance(error, OSError) and error.filename:
        return f"{error.strerror}: {error.filename}"
    return str(error)
