"""``dsrlab matrix``: the datapath tests and the scenarios under several kernels.

A thin face over :mod:`lab.matrix`: ``--list`` resolves the kernel list with
apt; a run boots each listed kernel with virtme-ng (the host kernel runs
directly), gathers the verdicts and prints the table.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lab.cli.output import err, fail, need_root, one_line_errors, status, styled, table
from lab.plumbing import names

if TYPE_CHECKING:  # the matrix loads when the command runs
    from lab.matrix.kernels import Group, ResolvedKernel

HELP = """Run the datapath tests and the scenarios under each kernel of the matrix.

Kernels come from kernels/matrix.yaml (Debian packages, the newest of each
line apt offers; scripts/install-matrix.sh installs them and virtme-ng) plus
`host`, the running kernel, run without a VM. Each listed kernel boots in
QEMU (KVM where /dev/kvm works, else TCG; DSRLAB_MATRIX_ACCEL=tcg|kvm
forces one). Under each kernel one pytest runs the groups of the list; first
the datapath goes through the kernel's verifier (the `verifier` row, and the
instructions it processed per program), and so do Cilium's objects of the
seed topology, per version of $DSRLAB_CILIUM_SRC (`cilium-verifier v1.13.0`
rows, built on the host for the guest kernel's predicted features; a skip
without a source). A kernel older than the datapath's
minimum (bpf/dsr.h) skips what needs it, with the reason. Results go to
OUT/<run-id>/<kernel>/ (junit.xml, pytest.log, verifier.json,
cilium-verifier.json, captures with
each scenario's report, verdict.json), with summary.json, summary.md and
summary.html beside them; the tables are printed at the end, with where each
kernel's time went (prepare, boot, set-up, start-up, verifier, collection,
tests by group, teardown, shutdown). Exit 1 when any cell fails.
"""


def matrix(  # noqa: PLR0917 (Typer: one parameter an option)
    kernel: Annotated[list[str] | None, typer.Option(
        "--kernel", "-k", help="a kernel of the list, or host (repeatable; default: all)")
    ] = None,
    list_only: Annotated[bool, typer.Option(
        "--list", help="print the kernels, resolved with apt, and exit")] = False,
    full: Annotated[bool, typer.Option(
        "--full", help="also the long groups (datapath test-run suite, fuzz)")] = False,
    out: Annotated[Path, typer.Option(help="folder of the runs")] = Path("matrix"),
    run_id: Annotated[str | None, typer.Option(help="the run's folder name (default: "
                                                    "UTC date-time)")] = None,
    kernels_file: Annotated[Path | None, typer.Option(
        "--kernels-file", help="the kernel list (default: kernels/matrix.yaml)")] = None,
    group: Annotated[list[str] | None, typer.Option(
        "--group", "-g", help="only this group of the list, default or full (repeatable)")
    ] = None,
) -> None:
    from lab import settings
    from lab.matrix import kernels as kl

    with one_line_errors():
        matrix_list = kl.load_list(kernels_file or kl.DEFAULT_LIST)
        names = kernel or [kl.HOST, *(k.name for k in matrix_list.kernels)]
        for n in names:
            if n != kl.HOST:
                matrix_list.kernel(n)  # an unknown name fails before anything runs
        groups = matrix_list.selected_groups(full, group)
        resolved = [kl.host_kernel() if n == kl.HOST else kl.resolve(matrix_list.kernel(n))
                    for n in names]
        if list_only:
            table(("kernel", "package", "version", "release", "installed"),
                  [[r.name, r.package or "-", r.version or "-", r.release,
                    "yes" if r.installed else "no"] for r in resolved])
            return
        need_root("dsrlab matrix needs root (network namespaces, BPF, QEMU)")
        settings.check_environment()  # before any guest boots
        _run(groups, resolved, full, out, run_id)


def _run(groups: list[Group], resolved: list[ResolvedKernel], full: bool, out: Path,
         run_id: str | None) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from lab.matrix.kernels import HOST
    from lab.matrix.run import (
        MATRIX_TAG_VAR,
        new_run_id,
        prepare_kernel,
        prepare_run,
        run_groups,
        run_vm,
    )
    from lab.matrix.verdict import (
        COLUMNS,
        Summary,
        rows,
        table_title,
        verifier_tables,
        write_summary,
    )

    rid = run_id or new_run_id()
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", rid):
        fail(f"--run-id {rid!r}: use letters, digits, '.', '_' and '-' (a folder name)")
    root = (out / rid).resolve()
    root.mkdir(parents=True, exist_ok=True)
    # the VMs (vng and QEMU) carry a run tag: what a killed matrix leaves running is
    # found by it (dsrlab clean TAG); the host's own tests are runs of their own
    tag = names.new_run_id()
    os.environ[MATRIX_TAG_VAR] = tag
    err.print(styled(f"matrix: its processes carry run tag {tag} (after a kill: "
                     f"dsrlab clean {tag})", "dim"))
    verdicts = []
    with status("matrix") as update:
        def progress(msg: str) -> None:
            update(msg)
            err.print(styled(f"matrix: {msg}", "dim"))

        vms = [k for k in resolved if k.name != HOST]
        image = prepare_run(groups, root, progress) if vms else None
        # the next kernel's objects are prepared on the host while this one runs
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare") as pool:
            ahead = {k.name: pool.submit(prepare_kernel, k, groups, root) for k in vms[:1]}
            for k in resolved:
                if k.name == HOST:
                    verdicts.append(run_groups(k, groups, root, progress))
                else:
                    i = vms.index(k)
                    if i + 1 < len(vms):
                        nxt = vms[i + 1]
                        ahead[nxt.name] = pool.submit(prepare_kernel, nxt, groups, root)
                    verdicts.append(run_vm(k, groups, root, progress=progress, image=image,
                                           prepared=ahead.pop(k.name).result()))
                summary = Summary(run_id=rid, full=full, kernels=verdicts)
                write_summary(summary, root)
    summary = Summary(run_id=rid, full=full, kernels=verdicts)
    table(COLUMNS, rows(summary), title=f"dsrlab matrix {rid}: {root}")
    for datapath, head, counts in verifier_tables(summary):
        title = table_title(datapath)
        table(head, counts, title=title[0].lower() + title[1:])
    for v in verdicts:
        boot = f", boot {v.boot_seconds:.1f} s" if v.boot_seconds is not None else ""
        err.print(styled(f"matrix: {v.kernel.name} ({v.kernel.release}"
                         f"{', ' + v.kernel.version if v.kernel.version else ''}): "
                         f"{v.outcome}, {v.seconds:.1f} s{boot}", "dim"))
        if v.phases:
            err.print(styled(f"matrix: {v.kernel.name} phases: {v.phase_summary()}", "dim"))
    if not summary.ok:
        raise typer.Exit(1)
