// SPDX-License-Identifier: GPL-2.0
/* A lookup/update mix on one map whose type the scenario chooses before load
 * (scenarios/map_throughput.toml sets [program.maps.m] type = ... per variant).
 *
 * The context is two u32s: the key (zipf-distributed by the scenario) and a number in
 * [0, 100) that picks the operation: below `write_pct` (a 100-percent scale) the program
 * updates the key, otherwise it looks it up and reads the value.  Keys stay below
 * max_entries, so the same program is valid for arrays and hashes. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} m SEC(".maps");

struct mix_ctx {
	__u32 key;
	__u32 dice;
	__u32 write_pct;
};

SEC("tracepoint/demo/mix")
int mix(struct mix_ctx *ctx)
{
	__u32 key = ctx->key;
	__u64 *v;

	if (ctx->dice < ctx->write_pct) {
		__u64 val = key;
		bpf_map_update_elem(&m, &key, &val, BPF_ANY);
		return 1;
	}
	v = bpf_map_lookup_elem(&m, &key);
	if (!v)
		return 0;
	return *v == key ? 2 : 3;
}

/* Fill: insert key ctx[0] (the scenario fires it once per key before measuring, so that the
 * measured lookups find their keys, as in a long-running system). */
SEC("tracepoint/demo/fill")
int fill(__u32 *ctx)
{
	__u32 key = ctx[0];
	__u64 val = key;

	bpf_map_update_elem(&m, &key, &val, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
