"""Progress bars on long work, with one rule for every command.

A command draws a tqdm bar on stderr when stderr is a terminal and ``--quiet`` is not given; piped or
redirected output stays clean. Library functions take ``progress: bool | None = False``: off by
default (tests and Python callers see nothing), ``True`` always draws, ``None`` draws only on a
terminal (what the commands pass unless ``--quiet``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable


def add_quiet_argument(parser: argparse.ArgumentParser) -> argparse.Action:
    """``--quiet``, with the same help in every command that shows progress."""
    return parser.add_argument("--quiet", action="store_true",
                               help="no progress bar (one is drawn on stderr only when it is a terminal)")


def from_args(args: argparse.Namespace) -> bool | None:
    """The ``progress`` argument of a command's library calls: None (only on a terminal) unless ``--quiet``."""
    return False if args.quiet else None


def progress_bar(iterable: Iterable | None = None, *, total: float | None = None, desc: str | None = None,
                 unit: str = "it", enabled: bool | None = False, leave: bool = True, **kwargs):
    """A tqdm bar on stderr over ``iterable`` (or, without one, updated by hand with ``.update(n)``).

    ``enabled``: True draws, False does not, None draws only when stderr is a terminal.
    """
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=f" {unit}", file=sys.stderr, leave=leave,
                disable=None if enabled is None else not enabled, dynamic_ncols=True, **kwargs)
