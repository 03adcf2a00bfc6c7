"""The user-facing error: the library raises it for problems a user can fix (a missing file,
a bad option); the command line prints its message on one line, without a traceback."""


class UserError(Exception):
    """An error the user can fix; printed without a traceback."""
