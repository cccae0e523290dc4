// SPDX-License-Identifier: GPL-2.0
/* Counters in an ARRAY and a PERCPU_ARRAY, the helpers a counter needs, and a map declared
 * with __uint(key_size/value_size) instead of __type(key/value). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u64));
} percpu_hits SEC(".maps");

/* Every invocation: counts[0] += 1 atomically, percpu_hits[0] += 1 on this CPU's copy. */
SEC("tracepoint/demo/emit")
int count(void *ctx)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&counts, &key);
	if (!v)
		return 0;
	__sync_fetch_and_add(v, 1);
	__u64 *p = bpf_map_lookup_elem(&percpu_hits, &key);
	if (p)
		*p += 1;
	return 1;
}

/* counts[cpu] += 1 and percpu_hits[1] = the time; returns the CPU number. */
SEC("tp/demo/cpu")
int count_cpu(void *ctx)
{
	__u32 cpu = bpf_get_smp_processor_id();
	__u32 slot = cpu & 3;
	__u64 *v = bpf_map_lookup_elem(&counts, &slot);
	if (v)
		__sync_fetch_and_add(v, 1);
	__u32 one = 1;
	__u64 *t = bpf_map_lookup_elem(&percpu_hits, &one);
	if (t)
		*t = bpf_ktime_get_ns();
	return cpu;
}

char LICENSE[] SEC("license") = "GPL";
