"""A capture set's layout on disk: its file names, the hop roles, its error.

Kept free of heavy imports: ``dsrlab review`` of a plain pcap needs these
names and nothing else of the capture package.
"""

from __future__ import annotations

from typing import Literal

from lab.errors import LabError

Role = Literal["client", "lb-node", "backend-node", "pod"]
ROLES: tuple[Role, ...] = ("client", "lb-node", "backend-node", "pod")
MANIFEST = "manifest.json"  # what was captured where (lab.capture.manifest)
RESULTS = "results.json"  # the trace checker's verdicts
MERGED = "merged.pcapng"  # every hop in one file, for Wireshark
LATEST = "latest"  # captures/<scenario>/latest -> the newest finished run


class CaptureError(LabError, RuntimeError):
    """A capture could not start or stop, or a capture set cannot be read."""
