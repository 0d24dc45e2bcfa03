"""The lab's own DSR datapath: build ``bpf/dsr.c``, load it, fill its maps, run it.

``build_object()`` compiles (cached), ``DatapathObject.load()`` loads through
the verifier; see :mod:`lab.datapath.loader` for the operations and
:mod:`lab.datapath.maps` for the map layouts.
"""

from lab.datapath.build import build_object
from lab.datapath.errors import DatapathError
from lab.datapath.loader import PROGRAMS, BpfMap, DatapathObject
from lab.datapath.maps import EVENT_NAMES, BackendEntry, CtEntry, RevnatEntry, ServiceEntry
from lab.datapath.tc import TcAttachment, TcHookPoint
from lab.datapath.testrun import TestRunResult
from lab.wire.dsropt import OptionOrder

__all__ = [
    "EVENT_NAMES",
    "PROGRAMS",
    "BackendEntry",
    "BpfMap",
    "CtEntry",
    "DatapathError",
    "DatapathObject",
    "OptionOrder",
    "RevnatEntry",
    "ServiceEntry",
    "TcAttachment",
    "TcHookPoint",
    "TestRunResult",
    "build_object",
]
