"""The ``mmgraph`` command."""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    print("mmgraph: not implemented yet", file=sys.stderr)
    return 1
