"""Map layouts from the object's own BTF: what drifted between 1.13 and 1.16 is
read, not assumed, and a field the lab writes that a version lacks is an error
naming the map and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.datapath.cilium import config as cfg
from lab.datapath.cilium.btf import ObjectBtf
from lab.datapath.cilium.build import build_node
from lab.datapath.cilium.source import CiliumSource
from lab.datapath.errors import DatapathError
from tests.datapath.cilium.test_build_load import POD, WORKER


def test_layouts_come_from_the_objects_btf(cilium_source: CiliumSource) -> None:
    host, _ = build_node(cilium_source, WORKER, [POD], cfg.LbParams())
    with ObjectBtf(host.path) as btf:
        key, value = btf.map_layouts("cilium_lb4_services_v2")
        assert (key.name, key.size, value.name, value.size) == (
            "lb4_key", 12, "lb4_service", 12)
        assert key.fields["dport"].big_endian
        assert key.pack({"address": bytes([172, 18, 0, 2]), "dport": 32000,
                         "backend_slot": 1}, where="t") == bytes.fromhex(
            "ac1200027d0001000000" "0000")
        _, backend = btf.map_layouts("cilium_lb4_backends_v3")
        _, info = btf.map_layouts("cilium_ipcache")
        if cilium_source.version.at_least(1, 16):
            assert "zone" in backend.fields
            assert "sec_identity" in info.fields
            assert "sec_label" not in info.fields
        else:
            assert "zone" not in backend.fields
            assert "sec_label" in info.fields
        with pytest.raises(DatapathError) as err:
            info.pack({"no_such_field": 1}, where="cilium_ipcache (test)")
        assert "cilium_ipcache (test)" in str(err.value)
        assert "no field 'no_such_field'" in str(err.value)
        with pytest.raises(DatapathError, match="does not fit"):
            key.pack({"dport": 1 << 16}, where="t")


def test_an_object_without_btf_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "x.o"
    bogus.write_bytes(b"not an ELF")
    with pytest.raises(DatapathError, match="no BTF"):
        ObjectBtf(bogus)
