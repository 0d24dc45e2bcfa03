"""Another suite's apt source for a kernel line: the files, their idempotence, and the
pin as apt itself reads it (a real apt on local repositories in a temporary folder:
the system's apt configuration is neither read nor changed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lab.matrix import aptsource
from lab.matrix.__main__ import main
from lab.matrix.kernels import DEFAULT_LIST, load_list, parse_policy, parse_search

KERNEL = r"linux-image-5\.10\.0-[0-9]+-amd64"


def test_sources_are_the_suite_and_its_security_archive() -> None:
    text = aptsource.sources_text("bullseye")
    blocks = [dict(line.split(": ", 1) for line in b.splitlines() if not line.startswith("#"))
              for b in text.split("\n\n")]
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    assert blocks == [
        {"Types": "deb", "URIs": "http://deb.debian.org/debian", "Suites": "bullseye",
         "Components": "main", "Signed-By": keyring},
        {"Types": "deb", "URIs": "http://deb.debian.org/debian-security",
         "Suites": "bullseye-security", "Components": "main", "Signed-By": keyring}]


def test_preferences_pin_the_suite_away_but_the_kernel() -> None:
    text = aptsource.preferences_text("bullseye", [KERNEL, KERNEL])  # given twice: once
    records = [dict(line.split(": ", 1) for line in r.splitlines() if not line.startswith("#"))
               for r in text.split("\n\n")]
    pins = [(r["Package"], r["Pin"], r["Pin-Priority"]) for r in records]
    anchored = f"/^({KERNEL})$/"
    assert pins == [(anchored, "release n=bullseye", "500"),
                    (anchored, "release n=bullseye-security", "500"),
                    ("*", "release n=bullseye", "-1"),
                    ("*", "release n=bullseye-security", "-1")]


def _dirs(tmp_path: Path) -> dict[str, Path]:
    out = {k: tmp_path / k for k in ("sources", "preferences", "lists")}
    for p in out.values():
        p.mkdir()
    return out


def _lists(lists: Path, suite: str) -> None:
    for name, uri in ((suite, "deb.debian.org_debian"),
                      (f"{suite}-security", "deb.debian.org_debian-security")):
        (lists / f"{uri}_dists_{name}_main_binary-amd64_Packages.lz4").write_bytes(b"x")


def test_apply_writes_once_and_asks_for_update_when_needed(tmp_path: Path) -> None:
    d = _dirs(tmp_path)
    first = aptsource.apply({"bullseye": [KERNEL]}, **d)
    src = d["sources"] / "dsrlab-bullseye.sources"
    pref = d["preferences"] / "dsrlab-bullseye"
    assert first.written == [src, pref]
    assert first.update == ["bullseye"]
    assert src.read_text() == aptsource.sources_text("bullseye")
    assert pref.read_text() == aptsource.preferences_text("bullseye", [KERNEL])
    assert {p.stat().st_mode & 0o777 for p in (src, pref)} == {0o644}
    # again, the lists still missing: nothing written, apt must still update
    stamp = src.stat().st_mtime_ns, pref.stat().st_mtime_ns
    again = aptsource.apply({"bullseye": [KERNEL]}, **d)
    assert (again.written, again.update) == ([], ["bullseye"])
    assert (src.stat().st_mtime_ns, pref.stat().st_mtime_ns) == stamp
    # the lists there (after apt-get update): nothing to do at all
    _lists(d["lists"], "bullseye")
    assert aptsource.apply({"bullseye": [KERNEL]}, **d) == aptsource.Applied()
    # only the main suite's lists: not enough
    next(d["lists"].glob("*security*")).unlink()
    assert aptsource.apply({"bullseye": [KERNEL]}, **d).update == ["bullseye"]
    _lists(d["lists"], "bullseye")
    # a pattern changed (or a file edited by hand): that file again, and an update
    changed = aptsource.apply({"bullseye": [KERNEL, r"linux-image-5\.10\.0-1-rt-amd64"]}, **d)
    assert (changed.written, changed.update) == ([pref], ["bullseye"])
    assert aptsource.apply({}, **d) == aptsource.Applied()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file() and "lists" not in str(p)) \
        == ["dsrlab-bullseye", "dsrlab-bullseye.sources"]  # no temporary file left


def test_the_systems_own_suite_is_never_pinned(tmp_path: Path) -> None:
    """On a bullseye system its own packages stay as they are: no file, no update."""
    d = _dirs(tmp_path)
    assert aptsource.apply({"bullseye": [KERNEL]}, **d, own="bullseye") == aptsource.Applied()
    assert not any(any(p.iterdir()) for p in d.values())
    release = tmp_path / "os-release"
    release.write_text('PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nVERSION_CODENAME=bullseye\n')
    assert aptsource.system_suite(release) == "bullseye"
    assert main([*_cli(d, "5.10"), "--os-release", str(release)]) == 0
    assert not any(any(p.iterdir()) for p in d.values())
    assert aptsource.system_suite(tmp_path / "none") is None
    release.write_text("ID=debian\n")
    assert aptsource.system_suite(release) is None


def _cli(d: dict[str, Path], *kernels: str) -> list[str]:
    args = ["apt-sources", "--sources-dir", str(d["sources"]), "--preferences-dir",
            str(d["preferences"]), "--lists-dir", str(d["lists"])]
    for k in kernels:
        args += ["--kernel", k]
    return args


def test_only_a_selected_kernel_with_a_suite_writes(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    d = _dirs(tmp_path)
    assert main(_cli(d, "6.1", "host")) == 0
    assert capsys.readouterr().out == ""
    assert not any(any(p.iterdir()) for p in d.values())  # 6.1 leaves bullseye alone
    assert main(["suites", "--kernel", "6.1"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["suites"]) == 0
    assert capsys.readouterr().out == "bullseye\n"
    assert main(_cli(d, "6.1", "5.10")) == 0
    assert capsys.readouterr().out == "update\n"
    assert (d["preferences"] / "dsrlab-bullseye").read_text() == aptsource.preferences_text(
        "bullseye", [load_list(DEFAULT_LIST).kernel("5.10").package])
    _lists(d["lists"], "bullseye")
    assert main(_cli(d)) == 0  # every kernel of the list: already done
    assert capsys.readouterr().out == ""
    assert main(_cli(d, "4.19")) == 1
    assert "no kernel '4.19'" in capsys.readouterr().err


def test_an_unwritable_folder_is_a_one_line_error(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    d = _dirs(tmp_path)
    d["sources"] = tmp_path / "missing"
    assert main(_cli(d, "5.10")) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'missing' / 'dsrlab-bullseye.sources'}: ")
    assert len(err.splitlines()) == 1


# --- the pin as apt reads it -------------------------------------------------------

def _package(name: str, version: str) -> str:
    return (f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n"
            f"Maintainer: t <t@example.org>\nFilename: pool/{name}_{version}_amd64.deb\n"
            f"Size: 1\nDescription: {name}\n")


def _repo(root: Path, codename: str, packages: list[tuple[str, str]]) -> None:
    """A local repository whose Release names ``codename`` (what the pins match)."""
    dist = root / "dists" / codename
    (dist / "main" / "binary-amd64").mkdir(parents=True)
    (dist / "main" / "binary-amd64" / "Packages").write_text(
        "\n".join(_package(n, v) for n, v in packages))
    (dist / "Release").write_text(f"Origin: Debian\nLabel: Debian\nCodename: {codename}\n"
                                  "Architectures: amd64\nComponents: main\n")


@pytest.fixture
def apt(tmp_path: Path) -> list[str]:
    """apt options for a world in ``tmp_path``: the bookworm system with bash, libc6 and
    the 6.1 kernel installed; bullseye and bullseye-security offering newer-numbered
    bash and libc6 (so that only the pin keeps them out), the 5.10 kernels and a
    kernel flavour the pattern does not name; this module's preferences file."""
    if shutil.which("apt-get") is None:
        pytest.skip("no apt on this machine")
    repos = tmp_path / "repos"
    _repo(repos, "bookworm", [("bash", "5.2.15-2"), ("libc6", "2.36-9")])
    _repo(repos, "bullseye", [("bash", "9.1-2"), ("libc6", "9.31-13"),
                              ("linux-image-5.10.0-45-amd64", "5.10.259-1")])
    _repo(repos, "bullseye-security", [("libc6", "9.31-14"),
                                       ("linux-image-5.10.0-46-amd64", "5.10.262-1"),
                                       ("linux-image-5.10.0-46-rt-amd64", "5.10.262-1")])
    etc = tmp_path / "etc"
    for sub in ("sources", "preferences", "parts"):
        (etc / sub).mkdir(parents=True)
    (etc / "sources" / "local.sources").write_text("\n".join(
        f"Types: deb\nURIs: file:{repos}\nSuites: {s}\nComponents: main\nTrusted: yes\n"
        for s in ("bookworm", "bullseye", "bullseye-security")))
    status = tmp_path / "status"
    status.write_text("\n".join(
        f"Package: {n}\nStatus: install ok installed\nVersion: {v}\nArchitecture: amd64\n"
        f"Maintainer: t <t@example.org>\nDescription: {n}\n"
        for n, v in (("bash", "5.2.15-2"), ("libc6", "2.36-9"),
                     ("linux-image-6.1.0-57-amd64", "6.1.192-3"))))
    for sub in ("lists/partial", "cache/archives/partial", "state"):
        (tmp_path / sub).mkdir(parents=True)
    opts = ["-oDir::Etc::SourceList=/dev/null", f"-oDir::Etc::SourceParts={etc}/sources",
            "-oDir::Etc::Preferences=/dev/null", f"-oDir::Etc::PreferencesParts={etc}/preferences",
            f"-oDir::Etc::Parts={etc}/parts", f"-oDir::State={tmp_path}/state",
            f"-oDir::State::Lists={tmp_path}/lists", f"-oDir::State::status={status}",
            f"-oDir::Cache={tmp_path}/cache", "-oAPT::Architecture=amd64",
            "-oAPT::Architectures::=amd64", "-oAPT::Sandbox::User=root",
            "-oDebug::NoLocking=1"]
    (tmp_path / "http").mkdir()  # this module's sources file (deb.debian.org): unused here
    aptsource.apply({"bullseye": [KERNEL]}, sources=tmp_path / "http",
                    preferences=etc / "preferences", lists=tmp_path / "lists")
    _run(["apt-get", *opts, "-qq", "update"])
    return opts


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_apt_takes_only_the_kernel_from_the_suite(apt: list[str]) -> None:
    policy = parse_policy(_run(["apt-cache", *apt, "policy", "bash", "libc6",
                                "linux-image-5.10.0-46-amd64",
                                "linux-image-5.10.0-46-rt-amd64"]))
    assert policy["bash"] == ("5.2.15-2", "5.2.15-2")  # bullseye's 9.1 never a candidate
    assert policy["libc6"] == ("2.36-9", "2.36-9")  # nor bullseye-security's 9.31
    assert policy["linux-image-5.10.0-46-amd64"] == (None, "5.10.262-1")
    assert policy["linux-image-5.10.0-46-rt-amd64"] == (None, None)  # not the pattern's
    search = _run(["apt-cache", *apt, "search", "--names-only", "linux-image-5"])
    assert parse_search(search, KERNEL)[0] == "linux-image-5.10.0-46-amd64"
    for what in ("upgrade", "dist-upgrade"):
        out = _run(["apt-get", *apt, "-s", what])
        assert "Inst " not in out, out
    out = _run(["apt-get", *apt, "-s", "install", "linux-image-5.10.0-46-amd64"])
    assert "Inst linux-image-5.10.0-46-amd64 (5.10.262-1 " in out
