"""``python -m psleak`` and the ``psleak`` script: see :mod:`psleak._cli`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from . import _cli


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``psleak`` with ``argv`` (default: the command line); returns the exit code."""
    return _cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
