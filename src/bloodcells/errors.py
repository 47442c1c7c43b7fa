"""Expected user errors: reported as one line and a non-zero exit, never as a traceback."""
import functools
import sys


class UserError(Exception):
    """Bad input or parameters; the message says what is wrong and what to do."""


def require(condition, message):
    if not condition:
        raise UserError(message)


def stage_main(func):
    """Wrap a stage's main(): UserError -> 'error: ...' on stderr, exit 2; Ctrl-C -> exit 130."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted: no output was written", file=sys.stderr)
            sys.exit(130)

    return wrapper
