"""``python -m lab.matrix``: what scripts/install-matrix.sh asks of the kernel list.

- ``packages [--kernel NAME]...``: the resolved Debian package of each kernel of the
  list (or of the named ones), one a line, to install;
- ``suites [--kernel NAME]...``: the other Debian suites those kernels come from, one a
  line;
- ``apt-sources [--kernel NAME]...``: writes those suites' apt sources and pins
  (:mod:`lab.matrix.aptsource`; nothing when no kernel needs one, nor for the
  system's own suite) and prints
  ``update`` when apt-get update must run (a file changed or a suite's lists are
  missing), nothing otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lab.atomic import OutputError
from lab.matrix import aptsource
from lab.matrix.kernels import DEFAULT_LIST, HOST, MatrixError, load_list, resolve


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab.matrix")
    sub = parser.add_subparsers(dest="command", required=True)
    helps = {"packages": "the list's resolved kernel packages, one a line",
             "suites": "the other Debian suites the kernels come from, one a line",
             "apt-sources": "write those suites' apt sources and pins; 'update' if needed"}
    for name, text in helps.items():
        p = sub.add_parser(name, help=text)
        p.add_argument("--list", type=Path, default=DEFAULT_LIST)
        p.add_argument("--kernel", action="append", default=[],
                       help="only this kernel of the list (repeatable; host needs none)")
        if name == "apt-sources":
            p.add_argument("--sources-dir", type=Path, default=aptsource.SOURCES_DIR)
            p.add_argument("--preferences-dir", type=Path, default=aptsource.PREFERENCES_DIR)
            p.add_argument("--lists-dir", type=Path, default=aptsource.LISTS_DIR)
            p.add_argument("--os-release", type=Path, default=aptsource.OS_RELEASE)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        matrix = load_list(args.list)
        chosen = args.kernel or None
        if args.command == "packages":
            names = [n for n in args.kernel if n != HOST] if args.kernel else [
                k.name for k in matrix.kernels]
            for name in names:
                print(resolve(matrix.kernel(name)).package)
        elif args.command == "suites":
            for suite in matrix.suites(chosen):
                print(suite)
        else:
            done = aptsource.apply(matrix.suites(chosen), sources=args.sources_dir,
                                   preferences=args.preferences_dir, lists=args.lists_dir,
                                   own=aptsource.system_suite(args.os_release))
            for path in done.written:
                print(f"install-matrix: wrote {path}", file=sys.stderr)
            if done.update:
                print("update")
        return 0
    except (MatrixError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
