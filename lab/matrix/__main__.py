"""``python -m lab.matrix packages [--kernel NAME]...``: the resolved Debian package of
each kernel of the list (or of the named ones), one a line, for
scripts/install-matrix.sh to install.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lab.matrix.kernels import DEFAULT_LIST, HOST, MatrixError, load_list, resolve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.matrix")
    sub = parser.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("packages", help="the list's resolved kernel packages, one a line")
    pk.add_argument("--list", type=Path, default=DEFAULT_LIST)
    pk.add_argument("--kernel", action="append", default=[],
                    help="only this kernel of the list (repeatable; host needs none)")
    args = parser.parse_args(argv)
    try:
        matrix = load_list(args.list)
        names = [n for n in args.kernel if n != HOST] if args.kernel else [
            k.name for k in matrix.kernels]
        for name in names:
            print(resolve(matrix.kernel(name)).package)
        return 0
    except MatrixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
