"""The kernel matrix: the datapath tests and the scenarios under several Linux kernels.

:mod:`lab.matrix.kernels` is the kernel list (``kernels/matrix.yaml``) and its
resolution with apt; :mod:`lab.matrix.run` runs the groups directly (the
host kernel) or inside a kernel booted with virtme-ng; :mod:`lab.matrix.verdict`
turns JUnit XML and the verifier's report into per-kernel verdicts and the
run's summary (JSON, Markdown, HTML). It sits above :mod:`lab.runner` in the
layers: it runs the suites as pytest processes, and of the stages below it
uses only the datapath's verifier report and object cache.
"""
