"""Command-line arguments shared by the stages: ``-c CONFIG`` and dotted ``key=value``
overrides. The CLI (csdseg/cli.py) and the stages with their own flags both take them from
here, so no stage imports the CLI.

The scripts of bench/ and experiments/ take overrides too, anywhere on their line
(:func:`parse_args`); they import it from here, the one place both folders reach without
adding the other to ``sys.path``.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from typing import Any

from csdseg.config import Config, load_config


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config",
                        help="YAML file, or a packaged preset by name: voc_irn, voc_mct, "
                             "coco_irn, coco_mct, synthetic_irn, synthetic_mct, ... "
                             "(csdseg/config/presets/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted overrides, e.g. train.epochs=3 data.root=/data/VOC2012")


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)


def print_report(report: dict[str, Any], table: Callable[[dict[str, Any]], str],
                 as_json: bool = False) -> dict[str, Any]:
    """An evaluation stage's output: its table, or (``--json``) the report itself."""
    print(json.dumps(report, indent=2) if as_json else table(report))
    return report


# Command lines of the scripts: ``key=value`` config overrides may come anywhere.
#
# argparse alone lets an option with ``nargs="+"`` (``--seeds 0 1 2``) swallow the overrides
# written after it ("invalid int value: 'csd.lambda_bg=1'"), so the overrides are taken out of
# the command line first: every token that looks like ``key=value`` and does not start with
# ``-``, and everything after a bare ``--``.
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
