"""Per-datapath expectations in a trace: ``datapath:`` with ``why:``, selected by the
datapath the capture set's manifest names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lab.capture.capdir import CaptureDir
from lab.check.trace import TraceError, check_trace, load_trace, parse_trace
from lab.check.trace.datapaths import Selector
from tests.seed import SEED_TRACE_PATH


@pytest.mark.parametrize(("selector", "name", "version", "holds"), [
    ("lab", "lab", "", True),
    ("lab", "", "", True),  # a capture set from before the manifest said: the lab's
    ("lab", "cilium", "v1.16.0", False),
    ("cilium", "cilium", "v1.13.0", True),
    ("cilium<1.14", "cilium", "v1.13.0", True),
    ("cilium<1.14", "cilium", "v1.13.0-rc5", True),  # the write-up's kind cluster
    ("cilium<1.14", "cilium", "v1.16.0", False),
    ("cilium>=1.14", "cilium", "v1.14.0", True),
    ("cilium==1.13", "cilium", "v1.13.2", True),
    ("lab, cilium>=1.14", "lab", "", True),
    ("lab, cilium>=1.14", "cilium", "v1.13.0", False),
    ("cilium>=1.14", "cilium", "", False),  # no version known: no versioned claim holds
])
def test_a_selector_holds_where_it_says(selector: str, name: str, version: str,
                                        holds: bool) -> None:
    assert Selector.parse(selector).matches(name, version) is holds


@pytest.mark.parametrize("bad", ["kind", "cilium>1", "lab>=1.14", "cilium=>1.14", ""])
def test_a_bad_selector_says_what_to_write(bad: str) -> None:
    with pytest.raises(ValueError, match=r"datapath|lab's datapath has no versions"):
        Selector.parse(bad)


def _seed() -> dict[str, object]:
    data: dict[str, object] = yaml.safe_load(SEED_TRACE_PATH.read_text())
    return data


def _syn_out(data: dict[str, object]) -> list[dict[str, object]]:
    (lb,) = [c for c in data["claims"] if c["name"] == "lb-node"]  # type: ignore[attr-defined]
    expect: list[dict[str, object]] = lb["expect"]
    return expect


@pytest.mark.parametrize(("change", "message"), [
    (lambda e: e[1].pop("why"), "datapath: say why the datapaths differ here"),
    (lambda e: e[1].update(datapath="kind"), "'kind' is not a datapath"),
    (lambda e: e[0].update(why="no datapath"), "why: goes with datapath:"),
    (lambda e: [e[2].pop("datapath"), e[2].pop("why")],
     "'syn-out' is already an expectation of claim"),
])
def test_a_bad_datapath_key_names_the_file_and_field(change: object, message: str) -> None:
    data = _seed()
    change(_syn_out(data))  # type: ignore[operator]
    with pytest.raises(TraceError) as info:
        parse_trace(data, "edited.trace.yaml")
    text = str(info.value)
    assert text.startswith("edited.trace.yaml: claims")
    assert message in text


def test_the_variant_is_chosen_by_the_capture_sets_datapath(seed_capture_copy: Path) -> None:
    """The lab's capture set (TTL 64 -> 63) passes as the lab's; told it came from
    Cilium 1.13, the 1.13 variant applies and the TTL check says which and why."""
    trace = load_trace(SEED_TRACE_PATH)
    assert check_trace(trace, CaptureDir.load(seed_capture_copy)).passed
    manifest = seed_capture_copy / "manifest.json"
    data = json.loads(manifest.read_text())
    data["datapath"] = {"name": "cilium", "version": "v1.13.0"}
    manifest.write_text(json.dumps(data))
    result = check_trace(trace, CaptureDir.load(seed_capture_copy))
    failed = [c for cl in result.claims for c in cl.failures]
    assert {c.label for c in failed} == {"lb-node/syn-out"}
    assert all("(on cilium<1.14: 1.13's tail_nodeport_ipv4_dsr" in c.message for c in failed)
    assert {(d.field, d.expected, d.got) for c in failed for d in c.diff if not d.ok} == {
        ("[IP].ttl", "64", "63")}
