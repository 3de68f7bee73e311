"""The one exception a command-line user can cause."""


class UsageError(Exception):
    """A problem the user can fix (bad path, unknown name, impossible value).

    The CLI prints its message on one line and exits with status 2, without a traceback.
    """
