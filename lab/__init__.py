"""dsrlab: a packet-level test lab for eBPF direct-server-return load balancing."""

__version__ = "0.1.0"
