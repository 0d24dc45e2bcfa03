"""``python -m lab.matrix``: the matrix's entry points that are not the user's command.

``packages``: the resolved Debian package of every kernel of the list, one a
line (scripts/install-matrix.sh installs them). ``guest``: run inside the VM
by :func:`lab.matrix.run.run_vm`: the groups under the guest's kernel, the
verdict written under ``--root`` (the VM's writable, shared folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lab.matrix.kernels import DEFAULT_LIST, MatrixError, ResolvedKernel, load_list, resolve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.matrix")
    sub = parser.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("packages", help="the list's resolved kernel packages, one a line")
    pk.add_argument("--list", type=Path, default=DEFAULT_LIST)
    gu = sub.add_parser("guest", help="inside the VM: run the groups, write the verdict")
    gu.add_argument("--root", type=Path, required=True)
    gu.add_argument("--kernel-json", type=Path, required=True)
    gu.add_argument("--groups", required=True)
    gu.add_argument("--list", type=Path, default=DEFAULT_LIST)
    args = parser.parse_args(argv)
    try:
        matrix = load_list(args.list)
        if args.command == "packages":
            for spec in matrix.kernels:
                pkg = resolve(spec).package
                print(pkg)
            return 0
        from lab.matrix.run import run_groups  # noqa: PLC0415 (runs only in the guest)

        kernel = ResolvedKernel.model_validate_json(args.kernel_json.read_text())
        wanted = args.groups.split(",")
        groups = [g for g in matrix.groups if g.name in wanted]
        verdict = run_groups(kernel, groups, args.root,
                             progress=lambda m: print(f"dsrlab-matrix: {m}", flush=True))
        print(f"dsrlab-matrix: {kernel.name}: {verdict.outcome}", flush=True)
        return 0
    except MatrixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
