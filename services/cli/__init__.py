"""The `reservoir` command: start the services and drive the system.

The sub-commands and their output are a contract (DESIGN.md): scripts use them. A
user error prints one line on stderr and exits 1; bad usage exits 2; a reader that
goes away (`reservoir ... | head`) ends the command quietly, with the status of a
process killed by SIGPIPE, as it ends cat.

`parser`: the sub-commands and their options; `data`: the commands on datasets and
files; `daemons`: the commands that start services; `local_cluster`: `reservoir up`;
`output`: how results are shown.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

from reservoir.cli.parser import parse
from reservoir.errors import ReservoirError
from reservoir.processes import tune_allocator
from reservoir.rpc.telemetry import setup_tracing

# The exit status of a process killed by SIGPIPE (128 + 13), as cat's when `| head` stops.
EXIT_BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    tune_allocator()
    try:
        setup_tracing(f"reservoir-{args.command}")
        code = args.run(args) or 0
        sys.stdout.flush()  # a reader gone away is found here, not at the interpreter's exit
        return code
    except BrokenPipeError:
        _discard_output()
        return EXIT_BROKEN_PIPE
    except ReservoirError as exc:
        print(f"reservoir: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _discard_output() -> None:
    """Point stdout and stderr at /dev/null: what is still buffered for the closed pipe
    is dropped when the interpreter flushes at exit, instead of raising again there."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in (sys.stdout, sys.stderr):
            # A caller may have put a stream without a descriptor there (a test's capture).
            with contextlib.suppress(AttributeError, ValueError, OSError):
                os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)


__all__ = ["EXIT_BROKEN_PIPE", "main", "parse"]
