"""Renamed command-line flags: the old name keeps working for one release, with a warning.

Flags are named by their unit (``--window-tokens``, ``--max-residues``, ``--block``; the table is
in docs/cli.md, "Flags"). An old name is added with :func:`deprecated_alias`: it sets the same
value as the new flag, is hidden from ``--help`` (the new flag's help names it), and each use logs
one line naming the new flag (:func:`deprecation_message`, which also words the warning for a
renamed config key, such as ``data.max_length``: ``datamodule.FORMER_NAMES``).
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("protein_performer")


class _DeprecatedAlias(argparse.Action):
    """Logs that ``option_string`` is deprecated, then does what the new flag's action does."""

    def __init__(self, option_strings, dest, *, target: argparse.Action, **kwargs) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.target = target

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        log.warning("%s", deprecation_message(parser.prog, option_string, self.target.option_strings[0], values))
        self.target(parser, namespace, values, self.target.option_strings[0])


UNITS = ("tokens", "residues")
"""Units a flag's name may end in; an old name meant different ones in different commands."""


def deprecation_message(prog: str, old: str, new: str, values=None) -> str:
    """The warning for one use of ``old``: in this command (``prog``) it is ``new``, in the unit
    ``new`` is named after (``--max-length`` means tokens in ``score``, residues in ``embed``),
    and the flag to type instead, with the value given."""
    unit = next((u for u in UNITS if new.endswith((f"-{u}", f"_{u}"))), None)  # a flag, or a config key
    meaning = f"in {prog} it is {new}" + (f", counted in {unit}" if unit else "")
    given = " ".join(map(str, values)) if isinstance(values, (list, tuple)) else ("" if values is None else str(values))
    return f"{old} is deprecated and will be removed in the next release; {meaning}: use {new} {given}".rstrip()


def deprecated_alias(parser, action: argparse.Action, *old: str) -> argparse.Action:
    """Let the flags ``old`` set ``action``'s value (``parser`` or an argument group holding it);
    returns ``action``, whose help now names them."""
    parser.add_argument(*old, action=_DeprecatedAlias, target=action, dest=action.dest, nargs=action.nargs,
                        const=action.const, type=action.type, choices=action.choices, metavar=action.metavar,
                        default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    if action.help is not argparse.SUPPRESS:
        names = " and ".join(old)
        action.help = f"{action.help or ''} [formerly {names}, deprecated]".lstrip()
    return action
