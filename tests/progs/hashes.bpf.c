// SPDX-License-Identifier: GPL-2.0
/* HASH and PERCPU_HASH counters keyed by a value from the context. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} by_key SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} percpu_by_key SEC(".maps");

/* by_key[ctx[0]] += 1 (inserted on first sight); percpu_by_key likewise on this CPU. */
SEC("tracepoint/demo/key")
int count_key(__u32 *ctx)
{
	__u32 key = ctx[0];
	__u64 one = 1;
	__u64 *v = bpf_map_lookup_elem(&by_key, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&by_key, &key, &one, BPF_NOEXIST);
	v = bpf_map_lookup_elem(&percpu_by_key, &key);
	if (v)
		*v += 1;
	else
		bpf_map_update_elem(&percpu_by_key, &key, &one, BPF_NOEXIST);
	return key;
}

char LICENSE[] SEC("license") = "GPL";
