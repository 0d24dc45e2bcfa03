"""manifest.json: one typed model writes and reads it; a bad one names the file and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lab.capture.layout import MANIFEST, ROLES, CaptureError
from lab.capture.manifest import (
    Manifest,
    ManifestBackend,
    ManifestClient,
    ManifestPoint,
    ManifestService,
)
from tests.seed import (
    BACKENDS,
    CLIENT_IP,
    LB_NAME,
    NODE_PORT,
    POD_NAME,
    POD_PORT,
    SEED_TOPOLOGY_PATH,
    SERVICE,
    SERVICE_ADDR,
    VIP,
)


def seed_manifest() -> Manifest:
    points = [ManifestPoint(name="client/br-kind", host="client", ifname="br-kind",
                            role="client", file="client--br-kind.pcap", packets=12),
              ManifestPoint(name=f"{LB_NAME}/eth0", host=LB_NAME, ifname="eth0", role="lb-node",
                            file=f"{LB_NAME}--eth0.pcap")]
    return Manifest(
        scenario="seed", run_id="abc123", backend="netns", topology=str(SEED_TOPOLOGY_PATH),
        service=ManifestService(ip=VIP, port=NODE_PORT, name=SERVICE.name),
        client=ManifestClient(ip=CLIENT_IP), option_byte_order="host",
        backends=[ManifestBackend(name=p.name, ip=str(p.ip), port=POD_PORT, node=p.node)
                  for p in BACKENDS],
        points=points)


def write_json(directory: Path, data: Any) -> Path:
    path = directory / MANIFEST
    path.write_text(json.dumps(data))
    return path


def test_write_then_read_is_the_same_manifest(tmp_path: Path) -> None:
    m = seed_manifest()
    path = m.write(tmp_path)
    assert path == tmp_path / MANIFEST
    assert not list(tmp_path.glob(".*.tmp"))  # written whole, the temporary file renamed
    back = Manifest.read(tmp_path)
    assert back == m
    assert back.service.endpoint == SERVICE_ADDR
    assert back.service.proto == "tcp"
    assert [b.name for b in back.backends] == [p.name for p in BACKENDS]
    assert back.points[0].packets == 12
    assert back.points[1].packets is None
    on_disk = json.loads(path.read_text())
    assert on_disk["service"] == {"ip": VIP, "port": NODE_PORT, "name": SERVICE.name,
                                  "protocol": "TCP"}
    # writing again replaces the file, never appends to it
    m.model_copy(update={"run_id": "def456"}).write(tmp_path)
    assert Manifest.read(tmp_path).run_id == "def456"


def test_facts_a_real_cluster_capture_may_lack_read_as_empty(tmp_path: Path) -> None:
    write_json(tmp_path, {"points": []})
    m = Manifest.read(tmp_path)
    assert (m.scenario, m.service.ip, m.service.port, m.client.ip) == ("", "", 0, "")
    assert m.backends == []
    assert m.option_byte_order == "host"


@pytest.mark.parametrize(("edit", "field", "message"), [
    (lambda d: d["points"][1].update(role="router"), "points[1].role",
     "Input should be " + " or ".join(", ".join(f"'{r}'" for r in ROLES).rsplit(", ", 1))
     + " (got 'router')"),
    (lambda d: d["service"].update(port="thirty-two thousand"), "service.port",
     "Input should be a valid integer, unable to parse string as an integer "
     "(got 'thirty-two thousand')"),
    (lambda d: d["backends"][0].update(port=[80]), "backends[0].port",
     "Input should be a valid integer"),
    (lambda d: d["points"][0].pop("file"), "points[0].file", "Field required"),
    (lambda d: d.update(option_byte_order="little"), "option_byte_order",
     "Input should be 'host' or 'network' (got 'little')"),
])
def test_a_bad_field_names_manifest_json_and_the_field(tmp_path: Path, edit: Any, field: str,
                                                       message: str) -> None:
    data = json.loads(seed_manifest().model_dump_json())
    edit(data)
    path = write_json(tmp_path, data)
    with pytest.raises(CaptureError) as info:
        Manifest.read(tmp_path)
    assert str(info.value).startswith(f"{path}: {field}: {message}"), str(info.value)


def test_every_bad_field_is_reported(tmp_path: Path) -> None:
    data = json.loads(seed_manifest().model_dump_json())
    data["points"][0]["role"] = "router"
    data["service"]["port"] = "x"
    path = write_json(tmp_path, data)
    with pytest.raises(CaptureError) as info:
        Manifest.read(tmp_path)
    fields = [line.split(": ")[1] for line in str(info.value).splitlines()]
    assert sorted(fields) == ["points[0].role", "service.port"]
    assert all(line.startswith(f"{path}: ") for line in str(info.value).splitlines())


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read manifest"),
    ("{not json", "cannot read manifest"),
    ("[1, 2]", "(top level): expected an object"),
])
def test_an_unreadable_manifest_is_named(tmp_path: Path, content: str | None,
                                         message: str) -> None:
    if content is not None:
        (tmp_path / MANIFEST).write_text(content)
    with pytest.raises(CaptureError) as info:
        Manifest.read(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / MANIFEST}: {message}")


def test_unknown_fields_are_kept_and_lists_are_found_by_name(tmp_path: Path) -> None:
    data = json.loads(seed_manifest().model_dump_json())
    data["gateways"] = [{"name": "gw1", "ip": "192.0.2.9"}, "not a record"]
    data["kernel"] = "6.18"
    data["service"]["zone"] = "a"
    write_json(tmp_path, data)
    m = Manifest.read(tmp_path)
    assert m.named_list("gateways") == [{"name": "gw1", "ip": "192.0.2.9"}]
    assert [b["name"] for b in m.named_list("backends") or []] == [p.name for p in BACKENDS]
    assert m.named_list("kernel") is None  # not a list
    assert m.named_list("nothing") is None
    assert m.value("kernel") == "6.18"
    assert m.value("nothing") is None
    assert m.value("service")["zone"] == "a"
    # and they survive a write
    copy = tmp_path / "copy"
    copy.mkdir()
    m.write(copy)
    again = json.loads((copy / MANIFEST).read_text())
    assert again["gateways"][0]["name"] == "gw1"
    assert again["kernel"] == "6.18"
    assert again["service"]["zone"] == "a"
    assert again["points"][1]["host"] == LB_NAME
    assert POD_NAME in {b["name"] for b in again["backends"]}


@pytest.mark.parametrize(("content", "message"), [
    ("null", "(top level): expected an object, got null"),
    ('"a string"', "(top level): expected an object, got str"),
    ("5", "(top level): expected an object, got int"),
    ('{"points": 5}', "points: Input should be a valid list (got 5)"),
    ('{"points": [5]}', "points[0]: Input should be a valid dictionary or instance of "
     "ManifestPoint (got 5)"),
    ('{"points": null}', "points: Input should be a valid list (got None)"),
    ("[" * 100000 + "]" * 100000, "cannot read manifest: nested too deeply"),
    ('{"a":' * 70 + "1" + "}" * 70, "cannot read manifest: nested more than 64 levels deep"),
    ("\xff\xfe", "not a text file"),
])
def test_a_manifest_of_the_wrong_shape_is_one_error(tmp_path: Path, content: str,
                                                    message: str) -> None:
    (tmp_path / MANIFEST).write_bytes(content.encode("latin-1"))
    with pytest.raises(CaptureError) as info:
        Manifest.read(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / MANIFEST}: {message}"), str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("file", "message"), [
    (None, "Input should be a valid string (got None)"),
    ("/etc/passwd", "Value error, must be a path inside the capture directory (no absolute "
     "path, no '..') (got '/etc/passwd')"),
    ("../../../etc/passwd", "Value error, must be a path inside the capture directory"),
    ("sub/../../x.pcap", "Value error, must be a path inside the capture directory"),
    ("", "Value error, must name a file inside the capture directory"),
    (".", "Value error, must name a file inside the capture directory"),
    (["a.pcap"], "Input should be a valid string"),
])
def test_a_point_file_outside_the_capture_directory_is_refused(tmp_path: Path, file: Any,
                                                               message: str) -> None:
    data = json.loads(seed_manifest().model_dump_json())
    data["points"][1]["file"] = file
    path = write_json(tmp_path, data)
    with pytest.raises(CaptureError) as info:
        Manifest.read(tmp_path)
    assert str(info.value).startswith(f"{path}: points[1].file: {message}"), str(info.value)


@pytest.mark.parametrize("target", ["/etc/passwd", "../outside.pcap", "loop.pcap"])
def test_a_symbolic_link_leading_out_of_the_capture_directory_is_refused(
        tmp_path: Path, target: str) -> None:
    from lab.capture.capdir import CaptureDir  # noqa: PLC0415

    d = tmp_path / "set"
    d.mkdir()
    (tmp_path / "outside.pcap").write_bytes(b"")
    seed_manifest().write(d)
    (d / f"{LB_NAME}--eth0.pcap").symlink_to(target if target != "loop.pcap"
                                            else f"{LB_NAME}--eth0.pcap")
    with pytest.raises(CaptureError) as info:
        CaptureDir.load(d)
    assert str(info.value).startswith(f"{d / MANIFEST}: points[1].file: "
                                      f"'{LB_NAME}--eth0.pcap' "), str(info.value)


def test_a_link_inside_the_capture_directory_is_fine(tmp_path: Path) -> None:
    from lab.capture.capdir import CaptureDir  # noqa: PLC0415

    seed_manifest().write(tmp_path)
    (tmp_path / "real.pcap").write_bytes(b"")
    (tmp_path / f"{LB_NAME}--eth0.pcap").symlink_to("real.pcap")
    cd = CaptureDir.load(tmp_path)
    assert cd.points[1].file == tmp_path.resolve() / f"{LB_NAME}--eth0.pcap"
