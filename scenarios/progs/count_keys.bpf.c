// SPDX-License-Identifier: GPL-2.0
/* Count events by key: look the key up and add one to its value, inserting it on first sight.
 *
 * The map's type is the scenario's choice (array, percpu_array, hash, percpu_hash, ...: the
 * runner changes it before load).  The add is atomic so that the count is right on a shared
 * map; on a per-CPU map it is only this CPU's copy, which no other CPU writes.
 * The context is one u32: the key. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

SEC("tracepoint/demo/count")
int count_key(__u32 *ctx)
{
	__u32 key = ctx[0];
	__u64 one = 1;
	__u64 *v = bpf_map_lookup_elem(&counts, &key);

	if (v) {
		__sync_fetch_and_add(v, 1);
		return 1;
	}
	/* Two CPUs may both miss and both insert: BPF_NOEXIST lets only one win. */
	if (bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST) == 0)
		return 2;
	v = bpf_map_lookup_elem(&counts, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
	return 3;
}

/* Fill: insert key ctx[0] (the scenario fires it once per key before measuring, so that the
 * measured lookups find their keys, as in a long-running system). */
SEC("tracepoint/demo/fill")
int fill(__u32 *ctx)
{
	__u32 key = ctx[0];
	__u64 val = 0;

	bpf_map_update_elem(&counts, &key, &val, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
