// SPDX-License-Identifier: GPL-2.0
/* Hash lookups against the map's fill, in the shape of the kernel's bpf_hashmap_lookup bench
 * (tools/testing/selftests/bpf/benchs, 2023): look every inserted key up in turn, all hits,
 * and time the loop inside the program with bpf_ktime_get_ns().
 *
 * Two HASH maps: `table` (65536 entries, as the bench) and `small` (4096 entries).  ctx[0]
 * picks one (0 = table, 1 = small).
 *
 *   fill(ctx):    ctx = {map, target}: inserts keys stats[map], ..., target-1 (one bpf_loop),
 *                 so stats[map] counts the keys present (0 .. stats[map]-1).
 *   lookup(ctx):  ctx = {map, slot, passes}: one untimed pass over keys 0 .. stats[map]-1 (it
 *                 brings the caches to their steady state), then `passes` timed passes; adds
 *                 the timed passes' nanoseconds to stats[2 + 3*slot], their lookups to
 *                 stats[3 + 3*slot] and their misses to stats[4 + 3*slot].
 *
 * ns per lookup in slot s = stats[2 + 3s] / stats[3 + 3s], measured by the program. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>


struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_ZERO_SEED);
	__type(key, __u32);
	__type(value, __u64);
} table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_ZERO_SEED);
	__type(key, __u32);
	__type(value, __u64);
} small SEC(".maps");

#define NR_SLOTS 3

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 + 3 * NR_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __u64 *stat(__u32 slot)
{
	return bpf_map_lookup_elem(&stats, &slot);
}

static void add(__u32 slot, __u64 n)
{
	__u64 *v = stat(slot);

	if (v)
		__sync_fetch_and_add(v, n);
}

struct fill_args {
	__u32 which;
	__u32 first;
};

static int insert_one(__u32 i, struct fill_args *a)
{
	__u32 key = a->first + i;
	__u64 val = key;
	long err;

	if (a->which)
		err = bpf_map_update_elem(&small, &key, &val, BPF_NOEXIST);
	else
		err = bpf_map_update_elem(&table, &key, &val, BPF_NOEXIST);
	if (err == 0)
		add(a->which, 1);
	return 0;
}

SEC("tracepoint/demo/fill")
int fill(__u32 *ctx)
{
	struct fill_args a = { .which = ctx[0] ? 1 : 0 };
	__u64 *keys = stat(a.which);
	__u32 target = ctx[1];

	if (!keys || *keys >= target)
		return 0;
	a.first = *keys;
	bpf_loop(target - a.first, insert_one, &a, 0);
	return 0;
}

struct pass_args {
	__u32 which;
	__u32 n;
	__u64 misses;
};

static int lookup_one(__u32 i, struct pass_args *a)
{
	void *v;

	if (a->which)
		v = bpf_map_lookup_elem(&small, &i);
	else
		v = bpf_map_lookup_elem(&table, &i);
	if (!v)
		a->misses += 1;
	return 0;
}

static int one_pass(__u32 pass, struct pass_args *a)
{
	bpf_loop(a->n, lookup_one, a, 0);
	return 0;
}

SEC("tracepoint/demo/lookup")
int lookup(__u32 *ctx)
{
	struct pass_args a = { .which = ctx[0] ? 1 : 0 };
	__u32 slot = ctx[1];
	__u64 *keys = stat(a.which);
	__u64 t0, t1;

	if (!keys || slot >= NR_SLOTS)
		return 0;
	a.n = *keys;
	one_pass(0, &a);		/* warm-up: not timed */
	a.misses = 0;
	t0 = bpf_ktime_get_ns();
	bpf_loop(ctx[2], one_pass, &a, 0);
	t1 = bpf_ktime_get_ns();
	add(2 + 3 * slot, t1 - t0);
	add(3 + 3 * slot, (__u64)a.n * ctx[2]);
	add(4 + 3 * slot, a.misses);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
