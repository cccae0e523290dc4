"""The simulated kernel: fd tables, bpf(2), the trace pipe, and SimHost."""
