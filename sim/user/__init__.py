"""Simulated user space: map and program handles that call bpf(2) as libbpf does."""
