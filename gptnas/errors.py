"""The one exception type for user mistakes.

CLIs catch it and print its message as one line (exit code 2); anything else
that escapes is a bug and keeps its traceback.
"""


class GptnasError(Exception):
    """A user mistake: bad input, bad config, missing file. The message says what to fix."""
