"""Running the matrix: the groups under the running kernel, or under a kernel in QEMU.

:func:`run_groups` runs each group as its own pytest process (JUnit XML,
captures and a log per group in the kernel's folder) and returns the
kernel's verdict; the host kernel uses it directly. :func:`run_vm` boots a
Debian kernel with virtme-ng (``vng``), which runs ``python -m lab.matrix
guest`` inside: the same :func:`run_groups`, with the BPF object cache and
every result under the run folder (the guest's only writable path, shared
with ``--rwdir``). The guest sees the host's root read-only, so it uses the
host's venv and repository as they are.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from lab.matrix.kernels import REPO, Group, MatrixError, ResolvedKernel
from lab.matrix.verdict import (
    GroupVerdict,
    KernelVerdict,
    find_reports,
    read_junit,
    read_verdict,
    write_verdict,
)
from lab.plumbing import procs

GUEST_MODULES = ("veth", "bridge", "sch_ingress", "cls_bpf", "act_bpf")
GUEST_UP = "dsrlab-matrix: guest up"
VERDICT = "verdict.json"
KVM_BOOT_TIMEOUT = 30.0  # a KVM guest is up in ~2 s; one that is not in 30 s hangs
_kvm_failed: set[bool] = set()  # KVM hung once in this process: TCG for the other kernels

Progress = Callable[[str], None]


_GROUP_STOP_GRACE_S = 30.0  # a stopped group's pytest takes its labs down first


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def pytest_command(group: Group, kdir: Path) -> list[str]:
    """The pytest command line of ``group`` with its outputs in ``kdir``."""
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "0",
            *group.paths, f"--junitxml={kdir / f'{group.name}.junit.xml'}",
            f"--dsrlab-captures={kdir / 'captures'}"]


def run_group(group: Group, kdir: Path, root: Path) -> GroupVerdict:
    """``group`` as one pytest process; its output to ``kdir/<group>.log``."""
    kdir.mkdir(parents=True, exist_ok=True)
    junit = kdir / f"{group.name}.junit.xml"
    junit.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    start = time.monotonic()
    with (kdir / f"{group.name}.log").open("w") as log:
        # a session of its own: a Ctrl-C on the terminal reaches this process only,
        # which then stops the child once (two signals could cut its teardown short)
        proc = subprocess.Popen(pytest_command(group, kdir), cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
        try:
            proc.wait()
        except BaseException:
            # stopped (SIGINT/SIGTERM): pytest tears its labs down on SIGTERM; a
            # SIGKILL (what subprocess.run sends) would leave their namespaces behind
            procs.stop([proc.pid], grace=_GROUP_STOP_GRACE_S)
            proc.wait()
            raise
    verdict = read_junit(junit, group.name, time.monotonic() - start, root)
    scenario_reports = find_reports(kdir / "captures", root)
    if scenario_reports and any(p.startswith("scenarios") for p in group.paths):
        verdict.reports = scenario_reports
    return verdict


def run_groups(kernel: ResolvedKernel, groups: list[Group], root: Path,
               progress: Progress = lambda _m: None) -> KernelVerdict:
    """Every group under the running kernel; the verdict is written to
    ``root/<kernel>/verdict.json`` and returned."""
    kdir = root / kernel.name
    start = time.monotonic()
    results = []
    for g in groups:
        progress(f"{kernel.name}: {g.name}")
        results.append(run_group(g, kdir, root))
    verdict = KernelVerdict(kernel=kernel, mode="direct", seconds=round(time.monotonic() - start,
                                                                          2), groups=results)
    write_verdict(verdict, kdir / VERDICT)
    return verdict


def vng_path() -> str:
    """``vng`` from this venv (where its ``virtme-run`` is too) or from PATH."""
    here = Path(sys.executable).parent / "vng"
    found = str(here) if here.exists() else shutil.which("vng")
    if not found:
        raise MatrixError("vng (virtme-ng) not found: run scripts/install-matrix.sh "
                          "(make matrix does)")
    return found


def kvm_usable() -> bool:
    """``/dev/kvm`` can be opened read-write (``DSRLAB_MATRIX_ACCEL=tcg|kvm`` overrides)."""
    forced = os.environ.get("DSRLAB_MATRIX_ACCEL")
    if forced in ("tcg", "kvm"):
        return forced == "kvm"
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def guest_script(kernel: ResolvedKernel, groups: list[Group], root: Path) -> str:
    """The shell command the guest runs: modules, bpffs, then ``python -m lab.matrix guest``."""
    kdir = root / kernel.name
    args = [sys.executable, "-m", "lab.matrix", "guest", "--root", str(root),
            "--kernel-json", str(kdir / "kernel.json"),
            "--groups", ",".join(g.name for g in groups)]
    return "; ".join([
        f"modprobe -a {' '.join(GUEST_MODULES)}",
        "mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf",
        f"echo '{GUEST_UP}' $(uname -r)",
        f"cd {shlex.quote(str(REPO))}",
        f"export DSRLAB_CACHE_DIR={shlex.quote(str(root / 'cache'))} PYTHONDONTWRITEBYTECODE=1",
        shlex.join(args),
    ])


def seed_cache(root: Path) -> None:
    """The host's compiled BPF objects, copied to the guests' cache (``root/cache``).

    The cache is content-addressed (sources, flags, compiler), and the guest
    runs the host's clang on the host's sources: every object the host built
    is a hit in the guest, which would otherwise compile under TCG. The
    default object is built first if the host has not yet.
    """
    # here, not at the top: the guest imports this module and never needs the datapath
    from lab.datapath.build import build_object, default_cache_dir  # noqa: PLC0415

    build_object()
    host = default_cache_dir()
    if host.is_dir():
        shutil.copytree(host, root / "cache" / "bpf", dirs_exist_ok=True)


def vng_command(kernel: ResolvedKernel, script: str, root: Path, kvm: bool, *,
                memory: str = "4G", cpus: int = 2) -> list[str]:
    # --force-9p: the guest's root is 9p anyway on these hosts (virtiofsd does not
    # start: vng waits 3-4 s for it, then falls back to 9p)
    cmd = [vng_path(), "--run", str(kernel.vmlinuz), "--force-9p"]
    if not kvm:
        cmd.append("--disable-kvm")
    return [*cmd, "-m", memory, "--cpus", str(cpus), "--rwdir", str(root), "--exec", script]


def _boot(cmd: list[str], log_path: Path, *, boot_timeout: float, timeout: float,
          progress: Progress, label: str) -> tuple[float | None, int]:
    """Run ``cmd`` (vng), its output to ``log_path``; ``(boot seconds or None, exit code)``.

    QEMU opens stdout and stderr separately: both go to one pipe, read here by a
    thread. No guest line within ``boot_timeout`` (KVM that hangs on a stock
    kernel), or a run past ``timeout``: the VM's process group is killed.
    """
    env = dict(os.environ)
    env["PATH"] = f"{Path(cmd[0]).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    lines: queue.Queue[str | None] = queue.Queue()
    start = time.monotonic()
    with log_path.open("w") as log, subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace", env=env, start_new_session=True) as proc:
        out = proc.stdout
        assert out is not None

        def pump() -> None:
            for line in out:
                lines.put(line)
            lines.put(None)

        def kill_vm() -> None:  # everything of the run lives inside the VM: nothing to undo
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        threading.Thread(target=pump, daemon=True).start()
        try:
            boot = _follow(lines, log, start=start, boot_timeout=boot_timeout, timeout=timeout,
                           kill_vm=kill_vm, progress=progress, label=label)
        except BaseException:  # stopped: the VM runs in a session of its own, so stop it
            kill_vm()
            raise
        rc = proc.wait()
    return boot, rc


def _follow(lines: queue.Queue[str | None], log: IO[str], *, start: float,
            boot_timeout: float, timeout: float, kill_vm: Callable[[], None],
            progress: Progress, label: str) -> float | None:
    """Copy the VM's output to ``log`` until it ends; kill it when it does not boot
    within ``boot_timeout`` or runs past ``timeout``. Returns the boot seconds."""
    boot: float | None = None
    while True:
        limit = (start + boot_timeout) if boot is None else (start + timeout)
        try:
            line = lines.get(timeout=max(0.0, limit - time.monotonic()))
        except queue.Empty:
            log.write(f"dsrlab-matrix: killed after {time.monotonic() - start:.0f} s "
                      f"({'no boot' if boot is None else 'timeout'})\n")
            kill_vm()
            return boot
        if line is None:
            return boot
        log.write(line)
        log.flush()
        if boot is None and line.startswith(GUEST_UP):
            boot = round(time.monotonic() - start, 2)
            progress(f"{label}: guest up in {boot:.1f} s, running")


def run_vm(kernel: ResolvedKernel, groups: list[Group], root: Path, *, timeout: float = 3600,
           boot_timeout: float = 120, progress: Progress = lambda _m: None) -> KernelVerdict:
    """Boot ``kernel`` (virtme-ng; KVM when usable, else TCG) and run ``groups`` inside.

    The guest writes ``root/<kernel>/verdict.json``; this adds how the VM ran
    (accelerator, boot time, wall time). KVM that does not boot the kernel
    within ``boot_timeout`` is tried again under TCG. A kernel that is not
    installed, a VM that does not boot or a guest that writes no verdict is a
    verdict with ``error`` set (the kernel fails), so the matrix goes on.
    """
    kdir = root / kernel.name
    kdir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()

    def failed(error: str, boot: float | None = None, accel: str | None = None) -> KernelVerdict:
        v = KernelVerdict(kernel=kernel, mode="vm", accel=accel, boot_seconds=boot,
                          seconds=round(time.monotonic() - start, 2), groups=[], error=error)
        write_verdict(v, kdir / VERDICT)
        return v

    if not kernel.installed or not kernel.vmlinuz.exists():
        return failed(f"{kernel.package} is not installed: run scripts/install-matrix.sh")
    (kdir / "kernel.json").write_text(kernel.model_dump_json(indent=2) + "\n")
    (kdir / VERDICT).unlink(missing_ok=True)
    seed_cache(root)
    script = guest_script(kernel, groups, root)
    boot: float | None = None
    rc = 0
    accel = "tcg"
    for kvm in ([True, False] if kvm_usable() and not _kvm_failed else [False]):
        accel = "kvm" if kvm else "tcg"
        progress(f"{kernel.name}: booting {kernel.release} ({accel})")
        cmd = vng_command(kernel, script, root, kvm)
        boot, rc = _boot(cmd, kdir / f"vm-{accel}.log",
                         boot_timeout=min(boot_timeout, KVM_BOOT_TIMEOUT) if kvm else boot_timeout,
                         timeout=timeout, progress=progress, label=kernel.name)
        if boot is not None:
            break
        if kvm:  # KVM does not boot stock kernels on some hosts: TCG from now on
            _kvm_failed.add(True)
            progress(f"{kernel.name}: KVM did not boot it in {KVM_BOOT_TIMEOUT:.0f} s; TCG")
    log = (kdir / f"vm-{accel}.log").relative_to(root)
    if boot is None:
        return failed(f"the VM did not boot to the command (vng exit {rc}; see {log})",
                      None, accel)
    try:
        inner = read_verdict(kdir / VERDICT)
    except MatrixError:
        return failed(f"the guest wrote no verdict (vng exit {rc}; see {log})", boot, accel)
    verdict = inner.model_copy(update={
        "kernel": kernel, "mode": "vm", "accel": accel, "boot_seconds": boot,
        "seconds": round(time.monotonic() - start, 2)})
    write_verdict(verdict, kdir / VERDICT)
    return verdict
