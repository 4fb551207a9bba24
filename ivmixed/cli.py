"""The ``ivmixed`` command line: a thin layer over the Python API.

Each sub-command lives in :mod:`ivmixed.commands` and registers itself with ``register(subparsers)``.
Usage errors (bad program text, unknown backbone, bad sizes, missing weights) exit with status 2 and
one clear message; NaN/Inf or a failing model during sampling exits with status 1 and names the step
and sub-step, and so does a file that cannot be written (in words); any other failure shows its traceback.
``--verbose`` also shows the traceback behind a one-line error. The first Ctrl-C (SIGINT) or SIGTERM stops
the command after its clean-up, with status 130 or 143 (see :mod:`ivmixed.interrupts`).
Sub-command modules import their heavy dependencies (numpy, torch, diffusers) inside ``run`` only.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from importlib import import_module

from . import __version__

COMMANDS = ("generate", "explain", "list", "sweep", "batch", "compare", "eval")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ivmixed",
        description="IV-mixed sampling: image and video diffusion models taking turns inside every sampling step.",
        epilog="Backbone options (-o NAME=VALUE): `ivmixed list --options BACKBONE`, e.g. `ivmixed list --options toy`. "
        "Output files are never replaced without --overwrite.",
    )
    parser.add_argument("--version", action="version", version=f"ivmixed {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what is being loaded and run")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        import_module(f"ivmixed.commands.{name.replace('-', '_')}").register(sub)
    for command in sub.choices.values():  # module docstrings are reStructuredText; help is plain text
        if command.description:
            command.description = command.description.replace("``", "")
    return parser


#: one error message is cut in the middle beyond this many characters (long inputs are also quoted shortened)
MESSAGE_LIMIT = 2000


def _short(message: str) -> str:
    if len(message) <= MESSAGE_LIMIT:
        return message
    cut = len(message) - MESSAGE_LIMIT
    return f"{message[: MESSAGE_LIMIT * 3 // 4]} … ({cut:,} characters left out) … {message[-(MESSAGE_LIMIT // 4):]}"


#: command-line values longer than this are quoted shortened in error messages (file paths stay whole below it)
INPUT_LIMIT = 400


def _long_inputs(argv: list[str]) -> list[str]:
    """The command-line values long enough to be quoted shortened in messages (``--opt=VALUE`` gives VALUE too)."""
    out = []
    for item in argv:
        if len(item) > INPUT_LIMIT:
            out.append(item)
            if item.startswith("-") and "=" in item:
                out.append(item.partition("=")[2])
    return sorted(set(out), key=len, reverse=True)


def _message(exc: BaseException, argv: list[str]) -> str:
    """The one-line text of an error: long inputs quoted shortened, the whole cut in the middle beyond MESSAGE_LIMIT."""
    from .errors import shorten_quotes

    return _short(shorten_quotes(str(exc), *_long_inputs(argv), limit=INPUT_LIMIT))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv  # what this command was given (batch records it in run.json; sys.argv is the host's in-process)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from . import interrupts
    from .commands._common import UsageError
    from .errors import NonFiniteLatents, SamplingFailed, WriteFailed
    from .registry import PluginError

    try:
        with interrupts.handle_signals():
            status = int(args.run(args) or 0)
            interrupts.check()  # a stop that was swallowed on the way still stops the command
            return status
    except BrokenPipeError:  # the reader went away (``ivmixed list | head``): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        signum = interrupts.requested()
        print(f"ivmixed {args.command}: {interrupts.message(signum)}", file=sys.stderr)
        return interrupts.exit_status(signum)
    except UsageError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"ivmixed {args.command}: error: {_message(exc, argv)}", file=sys.stderr)
        return 2
    except (NonFiniteLatents, SamplingFailed, WriteFailed, PluginError) as exc:  # the message names the step, or the file and cause
        if args.verbose:
            traceback.print_exc()
        print(f"ivmixed {args.command}: failed: {_message(exc, argv)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
