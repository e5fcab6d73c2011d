"""Command-line arguments shared by the stages: ``-c CONFIG`` and dotted ``key=value``
overrides. The CLI (csdseg/cli.py) and the stages with their own flags both take them from
here, so no stage imports the CLI."""
from __future__ import annotations

import argparse
import json
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
