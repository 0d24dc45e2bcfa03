"""Running the matrix: the groups under the running kernel, or under a kernel in QEMU.

Every group of a kernel runs in one pytest process (under emulation each
Python start costs half a minute): JUnit XML, the verifier's report, the
scenarios' captures and the log land in the kernel's folder, and
:func:`gather` splits them into the kernel's verdict, group by group.
:func:`run_groups` runs it under the host kernel. :func:`run_vm` boots a
Debian kernel with virtme-ng (``vng``), which runs the same pytest command
inside, with the BPF object cache and every result under the run folder
(the guest's only writable path, shared with ``--rwdir``). The guest sees
the host's root read-only and uses the host's venv and repository as they
are, so the host compiles what the guest will import first.
"""

from __future__ import annotations

import contextlib
import os
import platform
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from lab import settings
from lab.atomic import write_text
from lab.datapath.verifier import VerifierReport
from lab.errors import LabError
from lab.matrix import image as guest_image
from lab.matrix.kernels import REPO, Group, MatrixError, ResolvedKernel
from lab.matrix.phases import GUEST_MARKS, append_mark, phases_from, read_marks
from lab.matrix.verdict import (
    KernelVerdict,
    find_reports,
    read_cilium_verifiers,
    read_junit,
    verifier_group,
    write_verdict,
)
from lab.plumbing import procs, runtags

GUEST_MODULES = ("veth", "bridge", "sch_ingress", "cls_bpf", "act_bpf")
# loaded one by one where the kernel has them (modprobe brings their dependencies:
# geneve needs udp_tunnel and ip6_udp_tunnel); the tests that need one skip without it
GUEST_OPTIONAL_MODULES = ("geneve",)
MODULE_MISSING = "dsrlab-matrix: no module"
GUEST_UP = "dsrlab-matrix: guest up"
PYTEST_DONE = "dsrlab-matrix: pytest exit"
VERDICT = "verdict.json"
GUEST_SCRIPT = "guest.sh"
KVM_BOOT_TIMEOUT = 30.0  # a KVM guest is up in ~2 s; one that is not in 30 s hangs
KVM_MEMO = "kvm-does-not-boot"  # in the cache folder: this host's KVM hung on a kernel

Progress = Callable[[str], None]


_GROUP_STOP_GRACE_S = 30.0  # a stopped pytest takes its labs down first
JUNIT, PYTEST_LOG, VERIFIER_JSON = "junit.xml", "pytest.log", "verifier.json"
CILIUM_VERIFIER_JSON = "cilium-verifier.json"
CILIUM_VERIFIER_SCENARIO = "scenarios/seed.yaml"  # whose Cilium objects that report loads
# plugins the matrix's pytest does without: each costs seconds of start-up under TCG
# (hypothesis' plugin imports hypothesis at the session's end, ~17 s), and none is
# needed (one process, no cache on a read-only root)
PLUGINS_OFF = ("cacheprovider", "hypothesispytest", "xdist")


MATRIX_TAG_VAR = "DSRLAB_MATRIX_TAG"  # the run tag the matrix's VMs carry (DSRLAB_RUN)
CILIUM_SRC_VAR = "DSRLAB_CILIUM_SRC"  # passed on to the guest (its Cilium tests need it)


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def _pytest_base() -> list[str]:
    return [sys.executable, "-m", "pytest", *(a for p in PLUGINS_OFF for a in ("-p", f"no:{p}"))]


def pytest_command(groups: list[Group], kdir: Path) -> list[str]:
    """One pytest run over every group, its outputs in ``kdir``: JUnit XML (split into
    groups afterwards), scenario captures, the verifier's report, and the session's
    step marks (:mod:`lab.pytest_phases`)."""
    return [*_pytest_base(), "-p", "lab.pytest_phases", "-q",
            *(p for g in groups for p in g.paths),
            f"--junitxml={kdir / JUNIT}", f"--dsrlab-captures={kdir / 'captures'}",
            f"--dsrlab-verifier-report={kdir / VERIFIER_JSON}",
            f"--dsrlab-cilium-verifier-report={kdir / CILIUM_VERIFIER_JSON}",
            f"--dsrlab-phases={kdir / GUEST_MARKS}"]


def _fresh(kdir: Path) -> None:
    """A kernel's folder without the outputs of an earlier run under the same run id."""
    kdir.mkdir(parents=True, exist_ok=True)
    for name in (JUNIT, PYTEST_LOG, VERIFIER_JSON, CILIUM_VERIFIER_JSON, VERDICT, GUEST_MARKS):
        (kdir / name).unlink(missing_ok=True)
    shutil.rmtree(kdir / "captures", ignore_errors=True)


def gather(kernel: ResolvedKernel, groups: list[Group], root: Path,
           host_marks: dict[str, float] | None = None, **how: object) -> KernelVerdict:
    """The kernel's verdict from what its pytest run left in ``root/<kernel>``:
    the verifier's report first, then each group from the JUnit XML, and the
    phases from the host's and the guest's marks."""
    kdir = root / kernel.name
    how["phases"] = phases_from({**read_marks(kdir / GUEST_MARKS), **(host_marks or {})})
    rows = read_junit(kdir / JUNIT, groups, root)
    reports = find_reports(kdir / "captures", root)
    for g, row in zip(groups, rows, strict=True):
        if reports and any(p.startswith("scenarios") for p in g.paths):
            row.reports = reports
    verifier = None
    if (kdir / VERIFIER_JSON).exists():
        verifier = VerifierReport.model_validate_json((kdir / VERIFIER_JSON).read_text())
        rows.insert(0, verifier_group(verifier))
    cilium = read_cilium_verifiers(kdir / CILIUM_VERIFIER_JSON)
    rows[int(verifier is not None):0] = [verifier_group(r) for r in cilium]
    log = kdir / PYTEST_LOG
    return KernelVerdict.model_validate({
        "kernel": kernel, "groups": rows, "verifier": verifier, "cilium_verifiers": cilium,
        "log": str(log.relative_to(root)) if log.exists() else None, **how})


def run_groups(kernel: ResolvedKernel, groups: list[Group], root: Path,
               progress: Progress = lambda _m: None, *, cwd: Path = REPO) -> KernelVerdict:
    """Every group under the running kernel, in one pytest process (in ``cwd``, the
    folder the groups' paths are relative to); the verdict is written to
    ``root/<kernel>/verdict.json`` and returned."""
    kdir = root / kernel.name
    _fresh(kdir)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    progress(f"{kernel.name}: {', '.join(g.name for g in groups)}")
    start = time.monotonic()
    append_mark(kdir / GUEST_MARKS, "pytest-start")  # the host's clock
    with (kdir / PYTEST_LOG).open("w") as log:
        # a session of its own: a Ctrl-C on the terminal reaches this process only,
        # which then stops the child once (two signals could cut its teardown short)
        proc = subprocess.Popen(pytest_command(groups, kdir), cwd=cwd, stdout=log,
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
    append_mark(kdir / GUEST_MARKS, "pytest-exit")
    verdict = gather(kernel, groups, root, mode="direct",
                     seconds=round(time.monotonic() - start, 2))
    write_verdict(verdict, kdir / VERDICT)
    return verdict


def warm_host(groups: list[Group], kdir: Path) -> None:
    """Compile on the host what the guest will import: its root is read-only, so it
    would compile every module (and pytest rewrite every test module) on each boot,
    under emulation. Collecting the groups here also writes pytest's rewritten
    modules. Failures are the guest's to report."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with (kdir / "warm.log").open("w") as log:
        for cmd in ([sys.executable, "-m", "compileall", "-q", "lab", "tests"],
                    [*_pytest_base(), "-q", "--collect-only",
                     *(p for g in groups for p in g.paths)]):
            subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, env=env, check=False, timeout=300)


def vng_path() -> str:
    """``vng`` from this venv (where its ``virtme-run`` is too) or from PATH."""
    here = Path(sys.executable).parent / "vng"
    found = str(here) if here.exists() else shutil.which("vng")
    if not found:
        raise MatrixError("vng (virtme-ng) not found: run scripts/install-matrix.sh "
                          "(make matrix does)")
    return found


def _kvm_memo() -> Path:
    from lab.datapath.build import default_cache_dir  # noqa: PLC0415

    return default_cache_dir().parent / KVM_MEMO


def kvm_usable(progress: Progress = lambda _m: None) -> bool:
    """Whether to try KVM first: ``/dev/kvm`` opens read-write and KVM has not hung
    on this host kernel before (the memo in the cache folder, written when it did).
    ``DSRLAB_MATRIX_ACCEL=tcg|kvm`` overrides both."""
    forced = settings.matrix_accel()
    if forced is not None:
        return forced == "kvm"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    memo = _kvm_memo()
    with contextlib.suppress(OSError):
        if memo.read_text().split("\n")[0] == platform.release():
            progress(f"KVM did not boot a kernel on this host before ({memo}): TCG "
                     "(DSRLAB_MATRIX_ACCEL=kvm tries it again)")
            return False
    return True


def _remember_kvm_hangs() -> None:
    memo = _kvm_memo()
    with contextlib.suppress(OSError, LabError):  # a memo only: KVM is tried again
        memo.parent.mkdir(parents=True, exist_ok=True)
        write_text(memo, f"{platform.release()}\nKVM did not boot a guest kernel within "
                        f"{KVM_BOOT_TIMEOUT:.0f} s on this host kernel; the matrix uses "
                        "TCG here. Delete this file to try KVM again.\n")


def guest_script(kernel: ResolvedKernel, groups: list[Group], root: Path, *,
                 image: Path | None = None) -> str:
    """The shell command the guest runs: its first line says it is up, then the
    Python image's mounts (``image``), modules, bpffs and the groups' one pytest
    run, its output in ``root/<kernel>/pytest.log``; each step marks the guest's
    clock in ``root/<kernel>/phases.guest``."""
    kdir = root / kernel.name
    marks = shlex.quote(str(kdir / GUEST_MARKS))
    cilium = os.environ.get(CILIUM_SRC_VAR)  # the guest has none of the host's environment

    def mark(name: str) -> str:
        return f'echo "{name} $(date +%s.%N)" >> {marks}'

    return "; ".join([
        f"echo '{GUEST_UP}' $(uname -r)",
        mark("up"),
        *([guest_image.guest_mounts(image)] if image is not None else []),
        f"modprobe -a {' '.join(GUEST_MODULES)}",
        *(f"modprobe -q {m} || echo '{MODULE_MISSING} {m}'" for m in GUEST_OPTIONAL_MODULES),
        "mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf",
        mark("modules"),
        f"cd {shlex.quote(str(REPO))}",
        f"export DSRLAB_CACHE_DIR={shlex.quote(str(kdir / 'cache'))} PYTHONDONTWRITEBYTECODE=1",
        *([f"export {CILIUM_SRC_VAR}={shlex.quote(cilium)}"] if cilium else []),
        mark("pytest-start"),
        f"{shlex.join(pytest_command(groups, kdir))} > {shlex.quote(str(kdir / PYTEST_LOG))} 2>&1",
        "rc=$?",
        mark("pytest-exit"),
        f"echo '{PYTEST_DONE}' $rc",
    ])


def guest_command(kernel: ResolvedKernel, groups: list[Group], root: Path, *,
                  image: Path | None = None) -> str:
    """What vng's ``--exec`` gets: ``sh`` and the guest script, written to the kernel's
    folder. vng puts ``--exec`` on the kernel's command line, which x86 cuts at 2,048
    bytes (a guest given a longer one never runs it); the script is longer."""
    script_file = root / kernel.name / GUEST_SCRIPT
    script_file.parent.mkdir(parents=True, exist_ok=True)
    write_text(script_file, guest_script(kernel, groups, root, image=image) + "\n")
    return f"sh {shlex.quote(str(script_file))}"


def seed_cache(root: Path, groups: Sequence[Group] = (), release: str | None = None) -> None:
    """The host's compiled BPF objects, copied to the guests' cache (``root/cache``).

    The cache is content-addressed (sources, flags, compiler), and the guest
    runs the host's clang on the host's sources: every object the host built
    is a hit in the guest, which would otherwise compile under TCG. The
    default object is built first if the host has not yet, and so are the
    Cilium objects of the groups' ``cilium_scenarios`` (for every source
    ``DSRLAB_CILIUM_SRC`` names) and of the seed (the ``cilium-verifier`` rows),
    built for kernel ``release``'s predicted features (default: the running kernel),
    whose prepared trees and objects are copied too.
    """
    # here, not at the top: the guest imports this module and never needs the datapath
    from lab.datapath.build import build_object, default_cache_dir  # noqa: PLC0415

    build_object()
    host = default_cache_dir()
    if host.is_dir():
        shutil.copytree(host, root / "cache" / "bpf", dirs_exist_ok=True)
    scenarios = [s for g in groups for s in g.cilium_scenarios]
    where = os.environ.get(CILIUM_SRC_VAR)
    if where:
        scenarios = list(dict.fromkeys([CILIUM_VERIFIER_SCENARIO, *scenarios]))
        _seed_cilium(where, scenarios, root / "cache" / "cilium", release)


def _seed_cilium(where: str, scenarios: list[str], dest: Path, release: str | None) -> None:
    """Build ``scenarios``' Cilium objects here for every source at ``where`` and copy
    Cilium's cache to ``dest``. What cannot be built is left to the guest's tests to
    report (they build it again and say why)."""
    from lab.datapath.cilium.build import cache_root  # noqa: PLC0415
    from lab.datapath.cilium.node import build_topology  # noqa: PLC0415
    from lab.datapath.cilium.source import discover  # noqa: PLC0415
    from lab.model.scenario import load_scenario  # noqa: PLC0415

    with contextlib.suppress(LabError):
        for source in discover(where):
            for scenario in scenarios:
                with contextlib.suppress(LabError):
                    build_topology(source, load_scenario(REPO / scenario)[1], release=release)
        if cache_root().is_dir():
            shutil.copytree(cache_root(), dest, dirs_exist_ok=True)


def vng_command(kernel: ResolvedKernel, script: str, root: Path, kvm: bool, *,
                memory: str = "4G", cpus: int = 2) -> list[str]:
    # --force-9p: the guest's root is 9p anyway on these hosts (virtiofsd does not
    # start: vng waits 3-4 s for it, then falls back to 9p)
    cmd = [vng_path(), "--run", str(kernel.vmlinuz), "--force-9p"]
    if not kvm:
        cmd.append("--disable-kvm")
    # udev's coldplug: a worker that hangs (5.10's guest waited out the init's whole
    # 300 s settle) is stopped after 10 s; nothing of the lab's needs udev
    return [*cmd, "-m", memory, "--cpus", str(cpus), "--rwdir", str(root),
            "--append", "udev.event_timeout=10", "--exec", script]


def _boot(cmd: list[str], log_path: Path, *, boot_timeout: float, timeout: float,
          progress: Progress, label: str) -> tuple[float | None, int, dict[str, float]]:
    """Run ``cmd`` (vng), its output to ``log_path``; ``(boot seconds or None, exit code,
    the host's marks)``: the VM started, the guest's first and last lines, the VM gone.

    QEMU opens stdout and stderr separately: both go to one pipe, read here by a
    thread. No guest line within ``boot_timeout`` (KVM that hangs on a stock
    kernel), or a run past ``timeout``: the VM's process group is killed.
    """
    env = dict(os.environ)
    env["PATH"] = f"{Path(cmd[0]).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    tag = os.environ.get(MATRIX_TAG_VAR)
    if tag:  # found by it after a kill: dsrlab clean TAG
        env = runtags.tag_env(tag, env)
    lines: queue.Queue[str | None] = queue.Queue()
    start = time.monotonic()
    marks = {"host-vm-start": start}
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
                           kill_vm=kill_vm, progress=progress, label=label, marks=marks)
        except BaseException:  # stopped: the VM runs in a session of its own, so stop it
            kill_vm()
            raise
        rc = proc.wait()
    marks["host-vm-exit"] = time.monotonic()
    return boot, rc, marks


def _follow(lines: queue.Queue[str | None], log: IO[str], *, start: float,
            boot_timeout: float, timeout: float, kill_vm: Callable[[], None],
            progress: Progress, label: str, marks: dict[str, float]) -> float | None:
    """Copy the VM's output to ``log`` until it ends; kill it when it does not boot
    within ``boot_timeout`` or runs past ``timeout``. Returns the boot seconds; marks
    when the guest's first and last lines came in ``marks``."""
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
            marks["host-guest-up"] = time.monotonic()
            boot = round(marks["host-guest-up"] - start, 2)
            progress(f"{label}: guest up in {boot:.1f} s, running")
        elif line.startswith(PYTEST_DONE):
            marks["host-guest-done"] = time.monotonic()


def prepare_run(groups: list[Group], root: Path, progress: Progress = lambda _m: None,
                ) -> Path | None:
    """What every kernel of a run shares, done once: the host compiles what the
    guests import, then the guests' Python image (None: the guests read Python over
    9p, slower; the reason is shown)."""
    from lab.datapath.build import default_cache_dir  # noqa: PLC0415

    progress("compiling what the guests import, on the host")
    warm_host(groups, root)
    if not settings.matrix_image():
        progress(f"no Python image ({settings.MATRIX_IMAGE}=off): the guests read it over 9p")
        return None
    progress("the guests' Python image (standard library, venv, the repository's code)")
    try:
        return guest_image.build_image(default_cache_dir().parent / "matrix")
    except (MatrixError, OSError, subprocess.SubprocessError) as exc:
        progress(f"no Python image, the guests read Python over 9p: {exc}")
        return None


def prepare_kernel(kernel: ResolvedKernel, groups: list[Group], root: Path,
                   ) -> dict[str, float]:
    """A kernel's own preparation (its BPF and Cilium objects in its cache folder),
    which may run while the kernel before it runs; its start and end marks."""
    kdir = root / kernel.name
    kdir.mkdir(parents=True, exist_ok=True)
    marks = {"host-start": time.monotonic()}
    seed_cache(kdir, groups, kernel.release)  # Cilium's for its predicted features
    marks["host-prepared"] = time.monotonic()
    return marks


def run_vm(kernel: ResolvedKernel, groups: list[Group], root: Path, *, timeout: float = 3600,
           boot_timeout: float | None = None, progress: Progress = lambda _m: None,
           image: Path | None = None, prepared: dict[str, float] | None = None,
           ) -> KernelVerdict:
    """Boot ``kernel`` (virtme-ng; KVM when usable, else TCG) and run ``groups`` inside.

    The guest's pytest leaves its JUnit XML, verifier report, log, marks and
    captures in ``root/<kernel>``; the verdict is made from them here, with how
    the VM ran (accelerator, boot time, wall time, phases). ``image`` is the
    guests' Python image (:func:`prepare_run`); ``prepared`` the marks of
    :func:`prepare_kernel` when it ran already (else it runs here first). KVM
    that does not boot the kernel within 30 s is tried again under TCG, which
    may take ``boot_timeout`` (default: ``DSRLAB_MATRIX_BOOT_S``, 600 s). A
    kernel that is not installed, a VM that does not boot or a guest that runs
    no pytest is a verdict with ``error`` set (the kernel fails), so the matrix
    goes on.
    """
    kdir = root / kernel.name
    _fresh(kdir)
    start = time.monotonic()
    tcg_boot = settings.matrix_boot_seconds() if boot_timeout is None else boot_timeout

    def failed(error: str, boot: float | None = None, accel: str | None = None) -> KernelVerdict:
        v = KernelVerdict(kernel=kernel, mode="vm", accel=accel, boot_seconds=boot,
                          seconds=round(time.monotonic() - start, 2), groups=[], error=error)
        write_verdict(v, kdir / VERDICT)
        return v

    if not kernel.installed or not kernel.vmlinuz.exists():
        return failed(f"{kernel.package} is not installed: run scripts/install-matrix.sh")
    if prepared is None:
        progress(f"{kernel.name}: its BPF objects, on the host")
        prepared = prepare_kernel(kernel, groups, root)
    script = guest_command(kernel, groups, root, image=image)
    boot: float | None = None
    rc = 0
    accel = "tcg"
    host_marks: dict[str, float] = {}
    for kvm in ([True, False] if kvm_usable(progress) else [False]):
        accel = "kvm" if kvm else "tcg"
        progress(f"{kernel.name}: booting {kernel.release} ({accel})")
        cmd = vng_command(kernel, script, root, kvm)
        boot, rc, host_marks = _boot(cmd, kdir / f"vm-{accel}.log",
                                     boot_timeout=KVM_BOOT_TIMEOUT if kvm else tcg_boot,
                                     timeout=timeout, progress=progress, label=kernel.name)
        if boot is not None:
            break
        if kvm:  # KVM does not boot stock kernels on some hosts: TCG from now on
            _remember_kvm_hangs()
            progress(f"{kernel.name}: KVM did not boot it in {KVM_BOOT_TIMEOUT:.0f} s; TCG")
    log = (kdir / f"vm-{accel}.log").relative_to(root)
    if boot is None:
        return failed(f"the VM did not boot to the command within {tcg_boot:.0f} s "
                      f"(vng exit {rc}; see {log})", None, accel)
    if not (kdir / JUNIT).exists():
        return failed(f"pytest in the guest wrote no JUnit XML (vng exit {rc}; see {log} "
                      f"and {kernel.name}/{PYTEST_LOG})", boot, accel)
    verdict = gather(kernel, groups, root, {**prepared, **host_marks}, mode="vm",
                     accel=accel, boot_seconds=boot, seconds=round(time.monotonic() - start, 2))
    write_verdict(verdict, kdir / VERDICT)
    return verdict
