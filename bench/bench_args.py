"""Command lines of the experiment scripts: ``key=value`` config overrides may come anywhere.

argparse alone lets an option with ``nargs="+"`` (``--seeds 0 1 2``) swallow the overrides
written after it ("invalid int value: 'csd.lambda_bg=1'"), so the overrides are taken out of
the command line first: every token that looks like ``key=value`` and does not start with
``-``, and everything after a bare ``--``.
"""
from __future__ import annotations

import argparse
import re
import sys

_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the other arguments, the overrides), each in its original order."""
    if "--" in argv:
        cut = argv.index("--")
        rest, overrides = split_overrides(argv[:cut])
        return rest, overrides + argv[cut + 1:]
    overrides = [a for a in argv if _OVERRIDE.match(a)]
    return [a for a in argv if not _OVERRIDE.match(a)], overrides


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None
               ) -> argparse.Namespace:
    """``parser.parse_args`` with ``args.overrides`` collected from anywhere on the line."""
    rest, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    parser.usage = parser.format_usage().removeprefix("usage: ").rstrip() + " [KEY=VALUE ...]"
    args = parser.parse_args(rest)
    args.overrides = overrides
    return args
