"""The one exception type for user mistakes.

CLIs catch it and print its message as one line (exit code 2); anything else
that escapes is a bug and keeps its traceback.
"""


class GptnasError(Exception):
    """A user mistake: bad input, bad config, missing file. The message says what to fix."""


MAX_MESSAGE = 1_000  # characters a CLI prints of an error, whatever the input it quotes


def message(error: GptnasError) -> str:
    """What a CLI prints for a user mistake: its message, on one line, at most MAX_MESSAGE characters (each
    message quotes at most QUOTE_LIMIT characters of an input; this is the backstop)."""
    text = " ".join(str(error).split("\n"))
    return text if len(text) <= MAX_MESSAGE else f"{text[:MAX_MESSAGE]}... ({len(text)} characters)"


def one_line(error: BaseException) -> str:
    """`Type: first line of the message`, for logs and records of failures that are not the user's."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def check_limit(name: str, value, limit, low=None) -> None:
    """GptnasError stating the limit when `value` (a number read from a file or a flag) exceeds `limit` (or
    falls below `low`): numbers that size memory or loops are checked before anything is allocated."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GptnasError(f"{name} must be a number, got {quote(value)}")
    if not value <= limit:  # NaN fails too
        raise GptnasError(f"{name} must be at most {limit:,}, got {quote(value)}")
    if low is not None and value < low:
        raise GptnasError(f"{name} must be >= {low:,}, got {quote(value)}")


QUOTE_LIMIT = 200  # characters of a user's input that an error message repeats


def quote(value, limit: int = QUOTE_LIMIT) -> str:
    """repr(value) for an error message, cut to about `limit` characters: a message never repeats a whole file."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print (Python limits int-to-text conversion)
        text = f"<an integer of {value.bit_length()} bits>"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
