"""``python -m csdseg STAGE ...``: the same as the ``csdseg`` command."""
import sys

from csdseg.cli import main

if __name__ == "__main__":
    sys.exit(main())
