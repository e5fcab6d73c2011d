"""``csdseg <stage>``: parse the command line, load the config, call the stage's ``run``.

Each stage lives in its own module under :mod:`csdseg.stages`. A module exposes ``HELP`` (one
line), ``run(cfg)`` for config-driven stages, and optionally ``add_arguments(parser)`` plus
``main(args)`` for stages with their own flags. Config-driven stages all take
``-c CONFIG`` and dotted ``key=value`` overrides (:mod:`csdseg.stages.args`, shared with the
stages that add flags of their own, so no stage imports this module).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from csdseg.stages.args import add_config_arguments, config_from_args
from csdseg.stages.registry import STAGES as REGISTRY

# name -> module, in pipeline order: the one list of commands (csdseg.stages.registry)
STAGES: dict[str, str] = {stage.name: stage.module for stage in REGISTRY}


def _load(name: str):
    return importlib.import_module(STAGES[name])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csdseg",
        description="Weakly-supervised semantic segmentation with Cross-domain Semantic Decoupling.",
    )
    sub = parser.add_subparsers(dest="stage", metavar="STAGE")
    sub.required = True
    for name in STAGES:
        module = _load(name)
        p = sub.add_parser(name, help=module.HELP, description=getattr(module, "__doc__", None),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if hasattr(module, "add_arguments"):
            module.add_arguments(p)
        else:
            add_config_arguments(p)
    return parser


def one_line(exc: BaseException) -> str:
    """The message on one line; an error re-raised by a DataLoader worker carries the worker's
    traceback, of which only the last line (``pkg.ErrorType: message``) is the message."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and any("Traceback" in line for line in lines):
        last = lines[-1]
        prefix = f"{type(exc).__module__}.{type(exc).__name__}: "
        return last[len(prefix):] if last.startswith(prefix) else last
    return " ".join(line.strip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    args = build_parser().parse_args(argv)
    module = _load(args.stage)
    from csdseg.errors import USER_ERRORS

    try:
        if hasattr(module, "main"):
            result = module.main(args)
        else:
            result = module.run(config_from_args(args))
    except USER_ERRORS as exc:
        print(f"csdseg {args.stage}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # unwritable run_root, disk full...: the path and the reason
        where = f" {exc.filename}" if exc.filename else ""
        print(f"csdseg {args.stage}: error: cannot write or read{where}: "
              f"{exc.strerror or exc}; check the path, its permissions and free space",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"csdseg {args.stage}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
