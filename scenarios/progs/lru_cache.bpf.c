// SPDX-License-Identifier: GPL-2.0
/* An LRU hash used as a cache, and a small one that should hold every key it is given.
 *
 *   cache_zipf(ctx):   ctx[0] = key (zipf-distributed by the scenario).  Looks it up in `lru`;
 *                      a hit counts stats[0], a miss counts stats[1] and inserts the key
 *                      (which may evict another).
 *   small_put(ctx):    ctx = {cpu, j}: update key cpu + 64 * j into `small` (BPF_ANY), nothing
 *                      else, as a flow table is written; the scenario writes fewer keys than
 *                      the map has entries.
 *   small_get(ctx):    ctx = {cpu, j}: look that key up in `small`; a hit counts stats[2], a
 *                      miss stats[3] (every key was written, so a miss means it was evicted).
 *
 * stats is a PERCPU_ARRAY: each CPU counts in its own copy, so the counting itself adds no
 * contention; the scenario's metrics add the copies up. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 512);
	__type(key, __u32);
	__type(value, __u64);
} lru SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} small SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static void count(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &slot);

	if (v)
		*v += 1;
}

SEC("tracepoint/demo/zipf")
int cache_zipf(__u32 *ctx)
{
	__u32 key = ctx[0];
	__u64 val = key;

	if (bpf_map_lookup_elem(&lru, &key)) {
		count(0);
		return 1;
	}
	count(1);
	bpf_map_update_elem(&lru, &key, &val, BPF_ANY);
	return 0;
}

/* The small map, written the way a flow table is: first only updates, then reads. */
SEC("tracepoint/demo/small_put")
int small_put(__u32 *ctx)
{
	__u32 key = ctx[0] + 64 * ctx[1];
	__u64 val = key;

	bpf_map_update_elem(&small, &key, &val, BPF_ANY);
	return 0;
}

SEC("tracepoint/demo/small_get")
int small_get(__u32 *ctx)
{
	__u32 key = ctx[0] + 64 * ctx[1];

	if (bpf_map_lookup_elem(&small, &key)) {
		count(2);
		return 1;
	}
	count(3);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
