"""Fixtures of the Cilium datapath tests.

* ``cilium_sources`` (session): every source ``DSRLAB_CILIUM_SRC`` names (a
  checkout, a ``bpf/`` tarball, or a folder of tarballs such as
  ``shared/cilium/``); the tests that need one skip with the reason when the
  variable is unset.
* ``cilium_source`` (session, parametrized by version): one of them.
"""

from __future__ import annotations

import os

import pytest

from lab.datapath.cilium.source import ENV_VAR, CiliumSource, discover


def _sources() -> list[CiliumSource]:
    where = os.environ.get(ENV_VAR)
    if not where:
        return []
    return discover(where)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cilium_source" in metafunc.fixturenames:
        where = os.environ.get(ENV_VAR)
        found = _sources() if where else []
        if found:
            metafunc.parametrize("cilium_source", found, ids=[str(s.version) for s in found],
                                 scope="session")
        else:
            metafunc.parametrize("cilium_source", [pytest.param(None, marks=pytest.mark.skip(
                reason=f"no Cilium source: set {ENV_VAR} to a Cilium checkout or a folder of "
                       "cilium-<tag>-bpf.tar.gz (make test points it at ../shared/cilium)"))],
                ids=["no-source"], scope="session")
