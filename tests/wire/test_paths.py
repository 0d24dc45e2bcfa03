"""lab.wire.paths and the reader on paths that are not plain capture files.

What a path is, said before it is opened (a FIFO never blocks); outputs
written whole or not at all; a capture file that shrinks while it is read
cannot kill the process (the reader used to map the file itself: a
truncation then meant SIGBUS, the ``Bus error`` of ``datapath run`` with the
same file as input and output).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from lab.wire.paths import AtomicOutput, PathError, check_input, check_output, kind
from lab.wire.pcapio import PcapWriter, read_frames
from lab.wire.pcapread import CaptureFile, PcapError

REPO = Path(__file__).resolve().parents[2]


def _pcap(path: Path, n: int = 50) -> Path:
    wrpcap(str(path), [Ether() / IP(dst="172.18.0.2") / TCP(sport=1000 + i) / Raw(b"y" * 1000)
                       for i in range(n)])
    return path


def test_kinds(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "f")
    assert kind(os.stat(tmp_path / "f").st_mode) == "a FIFO"
    assert kind(os.stat("/dev/null").st_mode) == "a character device"
    assert kind(os.stat(tmp_path).st_mode) == "a directory"
    with pytest.raises(PathError, match=r"/f: not a regular file: a FIFO$"):
        check_input(tmp_path / "f")
    with pytest.raises(PathError, match=r"nope: does not exist$"):
        check_input(tmp_path / "nope")


@pytest.mark.parametrize(("name", "reason"), [
    ("fifo", "not a regular file: a FIFO"),
    ("/dev/zero", "not a regular file: a character device"),
    ("/dev/null", "not a regular file: a character device"),
    ("dir", "not a regular file: a directory"),
    ("missing", "does not exist"),
])
def test_reader_says_what_the_path_is_and_never_blocks(tmp_path: Path, name: str,
                                                       reason: str) -> None:
    """Was: a FIFO blocked the open forever; /dev/null, /dev/zero: 'empty file'."""
    path = Path(name) if name.startswith("/") else tmp_path / name
    if name == "fifo":
        os.mkfifo(path)
    elif name == "dir":
        path.mkdir()
    with pytest.raises(PcapError) as exc:
        CaptureFile(path)
    assert str(exc.value) == f"{path}: {reason}"


def test_a_file_truncated_while_open_does_not_kill_the_reader(tmp_path: Path) -> None:
    """In a child process (it died of SIGBUS, exit -7, on the old reader)."""
    path = _pcap(tmp_path / "in.pcap")
    code = textwrap.dedent(f"""
        import os
        from lab.wire.pcapread import CaptureFile
        with CaptureFile({str(path)!r}) as cap:
            os.truncate({str(path)!r}, 0)
            n = sum(bytes(cap.buf[s:s + c]).count(b"y") for _lt, s, c, _r in cap.records())
        print(n)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=30, check=False)
    assert out.returncode == 0, (out.returncode, out.stderr)
    assert out.stdout.strip() == str(50 * 1000)


def test_the_frames_are_read_before_the_output_replaces_the_input(tmp_path: Path) -> None:
    """read_frames holds its own copy: replacing the file under it changes nothing."""
    path = _pcap(tmp_path / "in.pcap", 5)
    frames = read_frames(path)
    first = next(frames)
    path.write_bytes(b"")
    assert [first, *frames][-1].data.endswith(b"y" * 1000)


def test_output_that_is_an_input_is_refused(tmp_path: Path) -> None:
    src = _pcap(tmp_path / "in.pcap", 1)
    (tmp_path / "sym.pcap").symlink_to(src)
    os.link(src, tmp_path / "hard.pcap")
    for out in (src, tmp_path / "sym.pcap", tmp_path / "hard.pcap"):
        with pytest.raises(PathError, match="is the input file"):
            check_output(out, [src])
    with pytest.raises(PcapError, match="is the input file"):
        PcapWriter(tmp_path / "hard.pcap", inputs=[tmp_path / "sym.pcap"])


def test_atomic_output_replaces_only_when_complete(tmp_path: Path) -> None:
    out = tmp_path / "o.bin"
    out.write_bytes(b"old")
    w = AtomicOutput(out)
    w.write(b"new")
    w.__exit__(RuntimeError, RuntimeError(), None)  # as a with block left on an exception
    assert out.read_bytes() == b"old"
    with AtomicOutput(out) as w:
        w.write(b"new")
    assert out.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.bin"]


def test_output_through_a_symlink_replaces_its_target(tmp_path: Path) -> None:
    (tmp_path / "real.pcap").write_bytes(b"old")
    (tmp_path / "link.pcap").symlink_to("real.pcap")
    with PcapWriter(tmp_path / "link.pcap") as w:
        w.write(b"\x00" * 20)
    assert (tmp_path / "link.pcap").is_symlink()
    assert len((tmp_path / "real.pcap").read_bytes()) == 24 + 16 + 20


def test_out_of_range_timestamps_are_clamped(tmp_path: Path) -> None:
    with PcapWriter(tmp_path / "o.pcap") as w:
        w.write(b"\x00" * 14, -5)
        w.write(b"\x00" * 14, 1 << 70)
    assert [f.ts_ns for f in read_frames(tmp_path / "o.pcap")] == [
        0, 0xFFFFFFFF * 1_000_000_000 + 999_999_999]
