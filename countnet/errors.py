"""The one error type users see: its message is printed as a single line, no traceback."""


class CountnetError(Exception):
    """Bad input or an unrecoverable condition the user can act on."""
