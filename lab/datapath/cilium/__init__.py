"""Cilium's own datapath, built from a Cilium source tree and loaded as the agent would.

:mod:`.source` reads a checkout or tarball (version, commit, hash), :mod:`.tree`
rewrites the build's copy for libbpf, :mod:`.config` writes the agent's headers,
:mod:`.build` compiles with the agent's flags (cached), :mod:`.load` loads a
node's objects with shared maps and filled tail calls.
"""
