"""Command-line arguments shared by the stages: ``-c CONFIG`` and dotted ``key=value``
overrides. The CLI (csdseg/cli.py) and the stages with their own flags both take them from
here, so no stage imports the CLI."""
from __future__ import annotations

import argparse

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
