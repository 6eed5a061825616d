"""How every command line of the project ends: a user's mistake is one line ``error: ...`` on stderr and
exit status 1; the traceback only with ``--debug`` (or ``LDA_DEBUG=1`` in the environment).

Used by ``python -m lda_cls.train / analyze / stats``, ``projects/LDA/train_net.py`` and
``projects/LDA/tools/*.py``::

    if __name__ == "__main__":
        run_cli(main)

argparse's own usage errors (exit status 2) are left as argparse prints them.
"""
import os
import re
import sys
from typing import Callable, List, NoReturn, Optional

__all__ = ["DEBUG_ENV", "add_debug_flag", "debug_requested", "message_of", "one_line", "run_cli"]

DEBUG_ENV = "LDA_DEBUG"
# Errors raised for what a user gave (a key, a file, a directory): their message is the whole story.
USER_ERRORS = (ValueError, OSError, KeyError)


def add_debug_flag(parser) -> None:
    parser.add_argument("--debug", action="store_true",
                        help=f"on an error, print the traceback too (also {DEBUG_ENV}=1)")


def debug_requested(argv: List[str]) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def message_of(error: BaseException) -> str:
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        return error.args[0]  # str(KeyError) would quote it
    text = str(error)
    if "Traceback (most recent call last)" in text:
        # An error re-raised from a worker process (torch.multiprocessing, detectron2's launch):
        # its last line is the worker's "Type: message".
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1] if lines else type(error).__name__
    return text


def one_line(error: BaseException) -> str:
    """The error as the one line after ``error: ``; types that are not a user's mistake are named, with a hint."""
    message = re.sub(r"\s*\n\s*", " ", message_of(error)).strip()
    if isinstance(error, USER_ERRORS) or getattr(error, "user_error", False):
        return message or type(error).__name__
    return f"{type(error).__name__}: {message} (unexpected; --debug or {DEBUG_ENV}=1 prints the traceback)"


def run_cli(main: Callable[[List[str]], object], argv: Optional[List[str]] = None) -> NoReturn:
    """Call ``main(argv)`` (default the process's arguments) and exit: 0, or 1 with one ``error:`` line."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        main(argv)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # SystemExit (argparse, sys.exit) is no Exception: it passes as it is
        if debug_requested(argv):
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)
