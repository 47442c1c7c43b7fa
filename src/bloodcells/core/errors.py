"""Expected user errors: reported as one line and a non-zero exit, never as a traceback."""
import functools
import signal
import sys

from bloodcells.core.atomic import discard_written


class UserError(Exception):
    """Bad input or parameters; the message says what is wrong and what to do."""


def require(condition, message):
    if not condition:
        raise UserError(message)


class Terminated(BaseException):
    """SIGTERM, raised where the program is so that `finally` blocks remove temporary files, as for Ctrl-C."""


def _raise_terminated(signum, frame):
    raise Terminated()


def stage_main(func):
    """Wrap a stage's main(): UserError -> 'error: ...' on stderr, exit 2; Ctrl-C -> exit 130; SIGTERM -> 143.
    Python's default SIGTERM ends the process without running `finally`, which would leave temporary files."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            return func(*args, **kwargs)
        except UserError as error:
            discard_written()
            print("error: " + " ".join(line.strip() for line in str(error).splitlines() if line.strip()),
                  file=sys.stderr)  # one line, even where a library's message had several
            sys.exit(2)
        except KeyboardInterrupt:
            discard_written()
            print("interrupted: no output was kept", file=sys.stderr)
            sys.exit(130)
        except Terminated:
            discard_written()
            print("terminated: no output was kept", file=sys.stderr)
            sys.exit(143)
        except Exception:
            discard_written()
            raise

    return wrapper
