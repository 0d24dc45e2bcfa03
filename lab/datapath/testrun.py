"""BPF_PROG_TEST_RUN for the tc programs: input/output context and result.

:class:`SkBuffCtx` is the prefix of ``struct __sk_buff`` that a test run may
set (``ingress_ifindex``, ``ifindex``, ``mark``, ``priority``, ``cb``) and
reads back; the kernel requires every other field to be zero.
:func:`run_program` executes one program on one Ethernet frame in the
calling thread's network namespace (``bpf_fib_lookup`` and ``ifindex`` are
resolved there) and returns a :class:`TestRunResult`.
"""

from __future__ import annotations

import ctypes
import errno
from dataclasses import dataclass

from lab.datapath import libbpf
from lab.datapath.errors import DatapathError, IngressIfindexRefused, TestRunRefused
from lab.datapath.maps import drop_reason_name

CTX_BUF_SIZE = 256  # >= sizeof(struct __sk_buff) of any kernel the lab runs on
OUT_HEADROOM = 256  # the programs grow a packet by at most 8 bytes
ETH_HLEN = 14

TC_VERDICTS: dict[int, str] = {
    -1: "unspec",
    0: "ok",
    1: "reclassify",
    2: "shot",
    3: "pipe",
    4: "stolen",
    5: "queued",
    6: "repeat",
    7: "redirect",
    8: "trap",
}
TC_ACT_SHOT = 2
MAX_REPEAT = 100_000_000  # the most repeats a perf-mode run asks the kernel for
TC_ACT_REDIRECT = 7
# skb->cb words the datapath sets (bpf/dsr.h: CB_*)
CB_REDIR_IFINDEX = 1
CB_REDIR_KIND = 2
CB_REDIR_NEIGH = 2


class SkBuffCtx(ctypes.Structure):
    """The head of ``struct __sk_buff`` (uapi/linux/bpf.h) up to ``cb``."""

    _fields_ = (
        ("len", ctypes.c_uint32),
        ("pkt_type", ctypes.c_uint32),
        ("mark", ctypes.c_uint32),
        ("queue_mapping", ctypes.c_uint32),
        ("protocol", ctypes.c_uint32),
        ("vlan_present", ctypes.c_uint32),
        ("vlan_tci", ctypes.c_uint32),
        ("vlan_proto", ctypes.c_uint32),
        ("priority", ctypes.c_uint32),
        ("ingress_ifindex", ctypes.c_uint32),
        ("ifindex", ctypes.c_uint32),
        ("tc_index", ctypes.c_uint32),
        ("cb", ctypes.c_uint32 * 5),
    )


@dataclass(frozen=True)
class TestRunResult:
    """What one BPF_PROG_TEST_RUN returned.

    ``verdict`` is the TC action name of ``retval``; ``data`` the frame
    after the program; ``duration_ns`` the kernel's average per repetition;
    ``cb`` the skb->cb words after the run; ``drop_reason`` the datapath's
    reason name (from cb[0]) when the verdict is ``shot``; ``redirect_ifindex``
    the target the program redirected to (from cb[1]) when the verdict is
    ``redirect``, with ``redirect_neigh`` telling bpf_redirect_neigh from
    bpf_redirect.
    """

    __test__ = False  # not a pytest test class

    retval: int
    verdict: str
    data: bytes
    duration_ns: int
    cb: tuple[int, ...]
    drop_reason: str | None
    redirect_ifindex: int | None = None
    redirect_neigh: bool = False


def _call(prog_fd: int, packet: bytes, ctx_in: ctypes.Array[ctypes.c_char], repeat: int,
          ) -> tuple[int, libbpf.BpfTestRunOpts, ctypes.Array[ctypes.c_char],
                     ctypes.Array[ctypes.c_char]]:
    """One BPF_PROG_TEST_RUN of ``packet`` with the context ``ctx_in``:
    (return code, the options as the kernel left them, data out, context out)."""
    data_in = ctypes.create_string_buffer(packet, len(packet))
    data_out = ctypes.create_string_buffer(len(packet) + OUT_HEADROOM)
    ctx_out = ctypes.create_string_buffer(CTX_BUF_SIZE)
    opts = libbpf.new_opts(libbpf.BpfTestRunOpts)
    opts.data_in = ctypes.cast(data_in, ctypes.c_void_p)
    opts.data_size_in = len(packet)
    opts.data_out = ctypes.cast(data_out, ctypes.c_void_p)
    opts.data_size_out = len(data_out)
    opts.ctx_in = ctypes.cast(ctx_in, ctypes.c_void_p)
    opts.ctx_size_in = CTX_BUF_SIZE
    opts.ctx_out = ctypes.cast(ctx_out, ctypes.c_void_p)
    opts.ctx_size_out = CTX_BUF_SIZE
    opts.repeat = repeat
    rc: int = libbpf.lib().bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts))
    return rc, opts, data_out, ctx_out


def _refuses_ingress_ifindex(prog_fd: int, packet: bytes) -> bool:
    """Whether the EINVAL came from the context's ``ingress_ifindex`` (Linux < 5.16):
    the same frame with an empty context is taken. That run's result is not used."""
    rc, *_ = _call(prog_fd, packet, ctypes.create_string_buffer(CTX_BUF_SIZE), 1)
    return rc != -errno.EINVAL


def run_program(
    prog_fd: int,
    packet: bytes,
    *,
    repeat: int = 1,
    ingress_ifindex: int = 0,
    ifindex: int = 0,
    mark: int = 0,
) -> TestRunResult:
    """Run the tc program ``prog_fd`` once (or ``repeat`` times) on ``packet``."""
    if len(packet) < ETH_HLEN:
        raise DatapathError(f"a test-run frame needs at least {ETH_HLEN} bytes, got {len(packet)}")
    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    ctx_in = ctypes.create_string_buffer(CTX_BUF_SIZE)
    head = SkBuffCtx.from_buffer(ctx_in)
    head.ingress_ifindex = ingress_ifindex
    head.ifindex = ifindex
    head.mark = mark

    rc, opts, data_out, ctx_out = _call(prog_fd, packet, ctx_in, repeat)
    if rc == -errno.EINVAL and ingress_ifindex and _refuses_ingress_ifindex(prog_fd, packet):
        raise IngressIfindexRefused
    if rc == -errno.EINVAL:
        raise TestRunRefused(
            f"BPF_PROG_TEST_RUN failed: {libbpf.errno_text(rc)} (the kernel refuses frames "
            "whose L3 header cannot be pulled, e.g. IPv4 shorter than 34 bytes, and "
            "unsupported context fields)"
        )
    libbpf.check(rc, "BPF_PROG_TEST_RUN")

    retval = ctypes.c_int32(opts.retval).value
    out_head = SkBuffCtx.from_buffer_copy(ctx_out)
    cb = tuple(int(x) for x in out_head.cb)
    verdict = TC_VERDICTS.get(retval, f"unknown({retval})")
    reason = drop_reason_name(cb[0]) if retval == TC_ACT_SHOT and cb[0] else None
    redirected = retval == TC_ACT_REDIRECT and cb[CB_REDIR_IFINDEX] != 0
    return TestRunResult(
        retval=retval,
        verdict=verdict,
        data=data_out.raw[: opts.data_size_out],
        duration_ns=int(opts.duration),
        cb=cb,
        drop_reason=reason,
        redirect_ifindex=cb[CB_REDIR_IFINDEX] if redirected else None,
        redirect_neigh=redirected and cb[CB_REDIR_KIND] == CB_REDIR_NEIGH,
    )
