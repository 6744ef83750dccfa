"""The one exception type the user sees as a single line instead of a traceback."""


class UserError(Exception):
    """A problem with the user's input (config value, data files, paths).

    The message must name the bad value and what is allowed; the entry point
    prints it as one line and exits non-zero.
    """
