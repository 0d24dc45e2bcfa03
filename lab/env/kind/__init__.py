"""The kind backend: the write-up's real cluster (kind, Cilium by Helm) from a topology.

:mod:`.plan` turns a topology into everything that will be run, as data first
(the kind cluster config, Cilium's Helm values in the chart version's own
spelling, :mod:`.values`; the workload and Service manifests, :mod:`.manifests`;
the command sequence), printable before anything runs (``dsrlab plan``), and
refuses there what kind (:mod:`.config`: node names, node images) or Cilium's
agent (:mod:`.agent`: its start-up checks per line) would refuse later.
:mod:`.status` reads the tools' output back (``kubectl get nodes -o json``,
``cilium status --verbose``, ``kind get clusters``).
"""
