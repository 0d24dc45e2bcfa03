"""Files a user names that are not what they should be: ``dsrlab review`` and
``dsrlab datapath run`` as a user runs them (a real subprocess).

Each class of bad path is one ``error:`` line on stderr naming the path and
saying what it is, the documented exit status, no traceback, no hang (a
FIFO must not block: every run has a timeout), the input's bytes unchanged
and no ``-dprun`` namespace left behind:

* ``--output`` that is the input (same path, a symbolic link, a hard link),
  a directory, in a missing folder, a device (``/dev/full``), in a read-only
  folder, or on a disk that fills up during the run (a tiny tmpfs in a
  private mount namespace);
* an input that is a FIFO, ``/dev/null``, ``/dev/zero``, a directory,
  missing, or unreadable (as user nobody).
"""

from __future__ import annotations

import hashlib
import os
import random
import shlex
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import PcapNgWriter, wrpcap
from typer.testing import CliRunner

from lab.cli import make_app
from tests.cli.helpers import DSRLAB, ENV, REPO, dsrlab
from tests.seed import POD_ADDR, SERVICE_ADDR, VIP

RUN = ["datapath", "run", "--program", "lb", "--service", SERVICE_ADDR, "--backend", POD_ADDR]
TIMEOUT = 30  # a run that blocks fails here instead of hanging the suite
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dprun_namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return {line.split()[0] for line in out.stdout.splitlines() if "-dprun" in line}


def _owner_pid(name: str) -> int | None:
    """The PID in the run's owner file (``/run/dsrlab/<run id>.owner``), if any."""
    run_id = name.split("-")[1]
    try:
        return int((Path("/run/dsrlab") / f"{run_id}.owner").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _another_live_run(name: str) -> bool:
    """Held by a live process other than this one: another test's run, in parallel."""
    pid = _owner_pid(name)
    return pid is not None and pid != os.getpid() and Path(f"/proc/{pid}").exists()


def left_behind(before: set[str]) -> set[str]:
    """-dprun namespaces that appeared since ``before`` and stay, not held by a live run
    of another test (those remove their own)."""
    new = dprun_namespaces() - before
    deadline = time.monotonic() + 5
    while new and time.monotonic() < deadline:
        time.sleep(0.2)
        new = {n for n in new & dprun_namespaces() if not _another_live_run(n)}
    return new


def assert_one_error(out: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert "Traceback" not in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out.stderr
    assert len(out.stderr.splitlines()) == 1, out.stderr
    for needle in needles:
        assert needle in errors[0], out.stderr
    assert out.returncode == code, out.stderr


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    """A small Ethernet pcap of SYNs to the service (each ~250 bytes)."""
    path = tmp_path / "in.pcap"
    wrpcap(str(path), [Ether() / IP(src="10.9.0.1", dst=VIP) /
                       TCP(sport=40000 + i, dport=int(SERVICE_ADDR.split(":")[1]), flags="S") /
                       Raw(b"x" * 200) for i in range(40)])
    return path


@pytest.fixture
def no_leak() -> Iterator[None]:
    before = dprun_namespaces()
    yield
    assert not left_behind(before), "a datapath run left its namespace behind"


# -- datapath run --output --------------------------------------------------------------------


@pytest.mark.parametrize("how", ["same-path", "symlink", "hard-link", "relative"])
def test_output_that_is_the_input_is_refused(capture: Path, how: str, no_leak: None) -> None:
    """Was: Bus error (exit 135), the input truncated to 0 bytes, the namespace left."""
    before = sha(capture)
    output = {"same-path": capture, "symlink": capture.with_name("link.pcap"),
              "hard-link": capture.with_name("hard.pcap"),
              "relative": capture.parent / ".." / capture.parent.name / capture.name}[how]
    if how == "symlink":
        output.symlink_to(capture.name)
    elif how == "hard-link":
        output.hardlink_to(capture)
    out = dsrlab(*RUN, "--input", str(capture), "--output", str(output), timeout=TIMEOUT)
    assert_one_error(out, 2, f"--output {output}", "is the input file")
    assert sha(capture) == before


def test_input_through_a_symlink_is_still_the_input(capture: Path, no_leak: None) -> None:
    link = capture.with_name("link.pcap")
    link.symlink_to(capture)
    before = sha(capture)
    out = dsrlab(*RUN, "--input", str(link), "--output", str(capture), timeout=TIMEOUT)
    assert_one_error(out, 2, f"--output {capture}", "is the input file")
    assert sha(capture) == before


@pytest.mark.parametrize(("output", "what"), [
    ("{tmp}", "not a regular file: a directory"),
    ("{tmp}/missing/dir/o.pcap", "folder {tmp}/missing/dir does not exist"),
    ("/dev/full", "not a regular file: a character device"),
    ("/dev/null", "not a regular file: a character device"),
    ("{tmp}/in.pcap/o.pcap", "a folder on its path is not a directory"),
], ids=["directory", "missing-folder", "dev-full", "dev-null", "folder-is-a-file"])
def test_unusable_output_is_one_error(capture: Path, output: str, what: str,
                                      no_leak: None) -> None:
    tmp = capture.parent
    before = sha(capture)
    output = output.format(tmp=tmp)
    out = dsrlab(*RUN, "--input", str(capture), "--output", output, timeout=TIMEOUT)
    assert_one_error(out, 2, f"--output {output}", what.format(tmp=tmp))
    assert sha(capture) == before
    assert sorted(p.name for p in tmp.iterdir()) == ["in.pcap"]  # no temporary file left


def _in_private_mount(tmp_path: Path, mount_opts: str, args: list[str],
                      ) -> subprocess.CompletedProcess[str]:
    """``dsrlab ARGS`` in a private mount namespace where ``tmp_path/mnt`` is a tmpfs
    mounted with ``mount_opts`` (nothing is mounted in the machine's own)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and util-linux unshare (a private mount namespace)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    line = (f"mount -t tmpfs -o {mount_opts} dsrlab-test {shlex.quote(str(mnt))} && exec "
            + shlex.join([*DSRLAB, *args]))
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", line],
                          capture_output=True, text=True, timeout=TIMEOUT, check=False,
                          cwd=REPO, env=ENV)


def test_output_in_a_read_only_folder(capture: Path, tmp_path: Path, no_leak: None) -> None:
    before = sha(capture)
    output = tmp_path / "mnt" / "o.pcap"
    out = _in_private_mount(tmp_path, "ro,size=64k",
                            [*RUN, "--input", str(capture), "--output", str(output)])
    assert_one_error(out, 2, f"--output {output}", "read-only file system")
    assert sha(capture) == before


@pytest.mark.bpf
@pytest.mark.netns
def test_disk_full_during_the_run(capture: Path, tmp_path: Path, no_leak: None) -> None:
    """The output (~10 KiB) does not fit a 4 KiB tmpfs: ENOSPC mid-run, after the
    namespace exists: one error, exit 1, the namespace and the temporary file gone."""
    before = sha(capture)
    output = tmp_path / "mnt" / "o.pcap"
    out = _in_private_mount(tmp_path, "size=4k",
                            [*RUN, "--input", str(capture), "--output", str(output)])
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {output}: cannot write: no space left on device"], out.stderr
    assert out.returncode == 1
    assert sha(capture) == before


@pytest.mark.bpf
@pytest.mark.netns
def test_a_failed_run_leaves_the_old_output(capture: Path, tmp_path: Path,
                                            no_leak: None) -> None:
    """The output is replaced only by a finished run: a truncated input (an error part-way)
    leaves the old output as it was; a good run replaces it, keeping its mode."""
    output = tmp_path / "o.pcap"
    output.write_bytes(b"old output")
    output.chmod(0o640)
    broken = tmp_path / "broken.pcap"
    broken.write_bytes(capture.read_bytes()[:-100])
    out = dsrlab(*RUN, "--input", str(broken), "--output", str(output), timeout=TIMEOUT)
    assert_one_error(out, 1, str(broken), "truncated")
    assert output.read_bytes() == b"old output"
    out = dsrlab(*RUN, "--input", str(capture), "--output", str(output), timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    assert output.read_bytes()[:4] == bytes.fromhex("4d3cb2a1")
    assert output.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pcap", "in.pcap", "o.pcap"]


# -- inputs: review and datapath run ------------------------------------------------------------


def _bad_input(tmp_path: Path, kind: str) -> tuple[str, str]:
    """A path of ``kind`` and what the error must say it is."""
    if kind == "fifo":
        fifo = tmp_path / "f.pcap"
        os.mkfifo(fifo)
        return str(fifo), "not a regular file: a FIFO"
    if kind == "directory":
        d = tmp_path / "d.pcap"
        d.mkdir()
        return str(d), "a directory"
    if kind == "missing":
        return str(tmp_path / "nope.pcap"), "does not exist"
    return {"dev-null": "/dev/null", "dev-zero": "/dev/zero"}[kind], \
        "not a regular file: a character device"


INPUT_KINDS = ["fifo", "dev-null", "dev-zero", "directory", "missing"]


@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_review_says_what_a_bad_input_is(tmp_path: Path, kind: str) -> None:
    """Was: blocked forever on a FIFO; /dev/null, /dev/zero and a FIFO were 'empty file'."""
    path, what = _bad_input(tmp_path, kind)
    out = dsrlab("review", path, timeout=TIMEOUT)
    assert_one_error(out, 2, path, what)


@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_datapath_run_says_what_a_bad_input_is(tmp_path: Path, kind: str,
                                               no_leak: None) -> None:
    """Was: /dev/null 'does not exist'."""
    path, what = _bad_input(tmp_path, kind)
    out = dsrlab(*RUN, "--input", path, "--output", str(tmp_path / "o.pcap"), timeout=TIMEOUT)
    assert_one_error(out, 2, f"--input {path}", what)
    assert not (tmp_path / "o.pcap").exists()


def _as_nobody(args: list[str]) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run as user nobody")
    return subprocess.run([*NOBODY, *DSRLAB, *args], capture_output=True, text=True,
                          timeout=TIMEOUT, check=False, cwd=REPO, env=ENV)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder every user can enter (pytest's own are root's, mode 0700)."""
    d = Path(tempfile.mkdtemp(prefix="dsrlab-test-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


@pytest.mark.parametrize("command", ["review", "datapath"])
def test_unreadable_input_as_another_user(open_dir: Path, capture: Path, command: str) -> None:
    """As root every file reads; user nobody cannot read a 0600 file of root's (was:
    click's boxed usage error, not one line)."""
    path = open_dir / "in.pcap"
    shutil.copyfile(capture, path)
    path.chmod(0o600)
    before = sha(path)
    args = (["review", str(path)] if command == "review"
            else [*RUN, "--input", str(path), "--output", str(open_dir / "o.pcap")])
    out = _as_nobody(args)
    prefix = "" if command == "review" else "--input "
    assert_one_error(out, 2, f"{prefix}{path}", "permission denied")
    assert sha(path) == before


def test_review_of_a_file_in_a_folder_it_cannot_enter(open_dir: Path, capture: Path) -> None:
    """Was: a PermissionError traceback (the path's stat, before any reading)."""
    (open_dir / "closed").mkdir(mode=0o700)
    path = open_dir / "closed" / "in.pcap"
    shutil.copyfile(capture, path)
    out = _as_nobody(["review", str(path)])
    assert_one_error(out, 2, str(path), "permission denied")


# -- fuzz: damaged capture files through both commands ------------------------------------------

FUZZ_CASES = 100
FUZZ_DATAPATH_EVERY = 3  # datapath run sets up a namespace and BPF: every third case


def _damaged_files(tmp_path: Path, capture: Path) -> list[Path]:
    """FUZZ_CASES damaged captures (seeded): cut short, bytes flipped, wrong magic, huge
    record and block lengths, other link types, garbage; from a pcap and a pcapng."""
    rng = random.Random(8)
    ng = tmp_path / "in.pcapng"
    with PcapNgWriter(str(ng)) as w:
        for i in range(6):
            w.write(Ether() / IP(src="10.9.0.1", dst=VIP) /
                    TCP(sport=41000 + i, dport=int(SERVICE_ADDR.split(":")[1]), flags="S"))
    bases = [capture.read_bytes()[:24 + 6 * 270], ng.read_bytes()]

    def damage(data: bytearray, how: int) -> bytearray:
        if how == 0:
            return data[:rng.randrange(len(data))]
        if how == 1:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            return data
        if how == 2:
            data[:4] = rng.randbytes(4)
            return data
        if how == 3:  # a huge length at a record/block boundary-ish offset
            at = rng.choice([8, 32, 24 + 8, 4, rng.randrange(len(data) - 4)])
            data[at:at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\xf0\xff\xff\x7f",
                                          b"\x00\x00\x00\x00", b"\x0d\x00\x00\x00"])
            return data
        if how == 4:  # another link type in the pcap header
            data[20:24] = rng.choice([0, 101, 113, 276, 65535, 0x7FFFFFFF]).to_bytes(4, "little")
            return data
        if how == 5:
            return bytearray(rng.randbytes(rng.randrange(64)))
        if how == 6:
            return data + rng.randbytes(rng.randrange(1, 40))
        # timestamps beyond classic pcap's 32-bit seconds (pcapng: each packet block's
        # high word; was a struct.error traceback when datapath run wrote them)
        off = 0
        while data[:4] == b"\n\r\r\n" and off + 12 <= len(data):
            btype, blen = struct.unpack_from("<II", data, off)
            if btype == 6:
                data[off + 12:off + 16] = rng.randbytes(4)
            off += max(blen, 12)
        return data

    out = []
    for i in range(FUZZ_CASES):
        data = damage(bytearray(bases[i % 2]), i % 8)
        path = tmp_path / f"fuzz-{i:03}.pcap"
        path.write_bytes(bytes(data))
        out.append(path)
    return out


@pytest.mark.bpf
@pytest.mark.netns
def test_fuzz_damaged_captures(tmp_path: Path, capture: Path, no_leak: None) -> None:
    """In-process through the commands' own code (Typer's runner): no traceback, no
    hang, exit 0, 1 or 2 only, the input never changed."""
    app, runner = make_app(), CliRunner()
    counts: dict[str, int] = {}
    for i, path in enumerate(_damaged_files(tmp_path, capture)):
        before = path.read_bytes()
        commands = [["review", str(path)]]
        if i % FUZZ_DATAPATH_EVERY == 0:
            commands.append([*RUN, "--input", str(path), "--output", str(tmp_path / "o.pcap")])
        for args in commands:
            t0 = time.monotonic()
            res = runner.invoke(app, args)
            took = time.monotonic() - t0
            what = f"{args[0]} {path.name}: exit {res.exit_code}\n{res.output}"
            assert res.exception is None or isinstance(res.exception, SystemExit), what
            assert "Traceback" not in res.output, what
            assert res.exit_code in (0, 1, 2), what
            assert took < 10, f"{what} took {took:.1f} s"
            key = f"{args[0]} exit {res.exit_code}"
            counts[key] = counts.get(key, 0) + 1
        assert path.read_bytes() == before
    print("fuzz:", dict(sorted(counts.items())))
    assert sum(counts.values()) == FUZZ_CASES + -(-FUZZ_CASES // FUZZ_DATAPATH_EVERY)
