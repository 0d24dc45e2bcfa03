"""The kernel list and its resolution, on real ``apt-cache`` output kept as files."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.matrix.kernels import (
    DEFAULT_LIST,
    KernelSpec,
    MatrixError,
    load_list,
    natural_key,
    parse_policy,
    parse_search,
    resolve_from,
)

DATA = Path(__file__).parent / "data"


def test_the_repository_list_is_valid() -> None:
    matrix = load_list(DEFAULT_LIST)
    assert [k.name for k in matrix.kernels] == ["5.10", "6.1", "6.12"]
    assert [k.suite for k in matrix.kernels] == ["bullseye", None, None]
    default = [g.name for g in matrix.selected_groups(full=False)]
    assert "datapath" in default
    assert "scenarios" in default
    assert "fuzz" not in default
    assert "fuzz" in [g.name for g in matrix.selected_groups(full=True)]
    for g in matrix.groups:  # every path of every group exists
        for p in [*g.paths, *g.cilium_scenarios]:
            assert (DEFAULT_LIST.parents[1] / p.split("::")[0]).exists(), p
    # Cilium's Geneve dispatch live takes minutes under TCG: not in the smoke
    assert "cilium-geneve" not in default
    (geneve,) = [g for g in matrix.selected_groups(full=True) if g.name == "cilium-geneve"]
    assert geneve.cilium_scenarios == ["scenarios/geneve/seed-geneve.yaml"]
    # the seed on Cilium's programs too; its objects built on the host for the guest
    assert "cilium-seed" in default  # the question users have: does Cilium work here
    (seed,) = [g for g in matrix.selected_groups(full=True) if g.name == "cilium-seed"]
    assert seed.cilium_scenarios == ["scenarios/seed.yaml"]
    assert "cilium-probes" in default


def test_natural_order_compares_numbers() -> None:
    assert natural_key("linux-image-6.1.0-9-amd64") < natural_key("linux-image-6.1.0-57-amd64")
    assert natural_key("6.12.99+deb12") < natural_key("6.12.117+deb12")


def test_search_picks_the_newest_generic_flavour() -> None:
    matrix = load_list(DEFAULT_LIST)
    six1 = parse_search((DATA / "apt-search-6.1.txt").read_text(),
                        matrix.kernel("6.1").package)
    assert six1[0] == "linux-image-6.1.0-57-amd64"
    assert len(six1) == 11
    six12 = parse_search((DATA / "apt-search-6.12.txt").read_text(),
                         matrix.kernel("6.12").package)
    assert six12[0] == "linux-image-6.12.117+deb12-amd64"
    # the -cloud- and -rt- flavours of the same search never match the generic pattern
    assert all("cloud" not in n and "-rt-" not in n for n in six12)


def test_policy_gives_installed_and_candidate() -> None:
    policy = parse_policy((DATA / "apt-policy.txt").read_text())
    assert policy["linux-image-6.1.0-57-amd64"] == ("6.1.192-3", "6.1.192-3")
    assert policy["linux-image-6.12.117+deb12-amd64"] == ("6.12.117-1~deb12u1",) * 2
    assert policy["linux-image-6.1.0-56-amd64"] == (None, "6.1.192-2")


def test_resolution_records_package_version_and_release() -> None:
    matrix = load_list(DEFAULT_LIST)
    k = resolve_from(matrix.kernel("6.12"), (DATA / "apt-search-6.12.txt").read_text(),
                     (DATA / "apt-policy.txt").read_text())
    assert k.package == "linux-image-6.12.117+deb12-amd64"
    assert k.version == "6.12.117-1~deb12u1"
    assert k.release == "6.12.117+deb12-amd64"
    assert k.installed
    assert str(k.vmlinuz) == "/boot/vmlinuz-6.12.117+deb12-amd64"
    assert str(k.modules) == "/lib/modules/6.12.117+deb12-amd64"


def test_a_package_apt_does_not_have_is_not_installed() -> None:
    spec = KernelSpec(name="6.1", package=r"linux-image-6\.1\.0-56-amd64")
    k = resolve_from(spec, (DATA / "apt-search-6.1.txt").read_text(),
                     (DATA / "apt-policy.txt").read_text())
    assert (k.package, k.version, k.installed) == ("linux-image-6.1.0-56-amd64", "6.1.192-2",
                                                   False)


def test_no_match_is_a_clean_error() -> None:
    spec = KernelSpec(name="5.10", package=r"linux-image-5\.10\.0-[0-9]+-amd64")
    with pytest.raises(MatrixError, match=r"kernel 5\.10: apt offers no package"):
        resolve_from(spec, (DATA / "apt-search-6.1.txt").read_text(), "")


@pytest.mark.parametrize(("text", "message"), [
    ("kernels: []\ngroups: []\n", "groups"),
    ("kernels: [{name: '6.1', package: 'linux-image-('}]\n"
     "groups: [{name: a, paths: [x]}]\n", "not a regular expression"),
    ("kernels: [{name: host, package: 'linux-image-x'}]\n"
     "groups: [{name: a, paths: [x]}]\n", "name"),
    ("kernels: [{name: '6.1', package: 'linux-image-a'}, {name: '6.1', package: "
     "'linux-image-b'}]\ngroups: [{name: a, paths: [x]}]\n", "names given twice: 6.1"),
    ("kernels: [\n", "not valid YAML"),
], ids=["no-groups", "bad-regex", "host-entry", "duplicate", "not-yaml"])
def test_a_bad_list_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "k.yaml"
    path.write_text(text)
    with pytest.raises(MatrixError, match=message) as info:
        load_list(path)
    assert str(path) in str(info.value)


def test_an_unknown_kernel_lists_the_known_ones() -> None:
    with pytest.raises(MatrixError, match=r"no kernel '4\.19'.*host, 5\.10, 6\.1, 6\.12"):
        load_list(DEFAULT_LIST).kernel("4.19")


def test_a_kernel_from_another_suite_resolves_from_apt_with_its_source() -> None:
    """apt-cache output of this machine with the bullseye source and pin of
    lab.matrix.aptsource (before the kernel was installed)."""
    spec = load_list(DEFAULT_LIST).kernel("5.10")
    search = (DATA / "apt-search-5.10.txt").read_text()
    assert parse_search(search, spec.package)[:2] == ["linux-image-5.10.0-46-amd64",
                                                      "linux-image-5.10.0-45-amd64"]
    k = resolve_from(spec, search, (DATA / "apt-policy-5.10.txt").read_text())
    assert (k.package, k.version, k.release, k.installed) == (
        "linux-image-5.10.0-46-amd64", "5.10.262-1", "5.10.0-46-amd64", False)
    # the same apt, for the system's packages: bullseye's versions are at -1
    policy = parse_policy((DATA / "apt-policy-5.10.txt").read_text())
    assert policy["libc6"] == ("2.36-9+deb12u14", "2.36-9+deb12u14")
    assert policy["bash"] == ("5.2.15-2+b8", "5.2.15-2+b13")


def test_a_kernel_pinned_away_is_a_clean_error() -> None:
    """apt knows the package but the suite's -1 pin holds it too (a preferences file
    without the kernel's record): one line that names the file to look at."""
    spec = load_list(DEFAULT_LIST).kernel("5.10")
    with pytest.raises(MatrixError, match=r"kernel 5\.10: apt knows linux-image-5\.10\.0-46-"
                       r"amd64 but would not install it \(no candidate: see "
                       r"/etc/apt/preferences\.d/dsrlab-bullseye\)"):
        resolve_from(spec, (DATA / "apt-search-5.10.txt").read_text(),
                     (DATA / "apt-policy-5.10-blocked.txt").read_text())
    # without its source apt has no such package: the error says what adds it
    with pytest.raises(MatrixError, match=r"install-matrix\.sh 5\.10 adds bullseye's apt"):
        resolve_from(spec, (DATA / "apt-search-6.1.txt").read_text(), "")


def test_the_suites_of_the_selected_kernels() -> None:
    matrix = load_list(DEFAULT_LIST)
    five = matrix.kernel("5.10").package
    assert matrix.suites() == {"bullseye": [five]}
    assert matrix.suites(["6.1", "6.12", "host"]) == {}
    assert matrix.suites(["host", "5.10"]) == {"bullseye": [five]}


@pytest.mark.parametrize(("line", "message"), [
    ("suite: stable", "names a moving release"),
    ("suite: Bullseye", "not a Debian suite codename"),
    ("suite: bullseye-security", "not a Debian suite codename"),
    ("suite: ''", "not a Debian suite codename"),
    ("suite: [bullseye]", "suite"),
], ids=["alias", "capitals", "security-suite", "empty", "list"])
def test_a_bad_suite_names_the_field(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "k.yaml"
    path.write_text(f"kernels: [{{name: '5.10', package: 'linux-image-5', {line}}}]\n"
                    "groups: [{name: a, paths: [x]}]\n")
    with pytest.raises(MatrixError, match=message) as info:
        load_list(path)
    assert f"{path}: kernels[0].suite" in str(info.value)


@pytest.mark.parametrize("pattern", [
    r"linux-image-5\.10\.0-\d+-amd64", r"linux-image-(?:5)", r"linux-image-5.*?",
    "linux-image-5/x"])
def test_a_pattern_apt_would_read_otherwise_is_refused_with_a_suite(tmp_path: Path,
                                                                    pattern: str) -> None:
    path = tmp_path / "k.yaml"
    body = (f"kernels: [{{name: '5.10', package: '{pattern}'%s}}]\n"
            "groups: [{name: a, paths: [x]}]\n")
    path.write_text(body % "")
    load_list(path)  # Python's expression: fine without a suite
    path.write_text(body % ", suite: bullseye")
    with pytest.raises(MatrixError, match="with a suite: "):
        load_list(path)
