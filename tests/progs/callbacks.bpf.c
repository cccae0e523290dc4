// SPDX-License-Identifier: GPL-2.0
/* Callbacks: bpf_loop and bpf_for_each_map_elem take a function's address (LD_DW_IMM src=4). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 5);
	__type(key, __u32);
	__type(value, __u64);
} values SEC(".maps");

struct loop_ctx {
	__u64 sum;
	__u64 step;
};

static int add_index(__u32 index, struct loop_ctx *c)
{
	c->sum += index * c->step;
	return 0;
}

/* sum of i * ctx[0] for i in 0..9 */
SEC("tracepoint/demo/loop")
int loop_sum(__u64 *ctx)
{
	struct loop_ctx c = {0, ctx[0]};
	bpf_loop(10, add_index, &c, 0);
	return c.sum;
}

struct each_ctx {
	__u64 sum;
	__u32 seen;
};

static __u64 add_value(void *map, __u32 *key, __u64 *val, struct each_ctx *c)
{
	c->sum += *val;
	c->seen += 1;
	return 0;
}

/* Sum of every value in `values`, times 100, plus the number of elements visited. */
SEC("tp/demo/each")
int each_sum(void *ctx)
{
	struct each_ctx c = {0, 0};
	long n = bpf_for_each_map_elem(&values, add_value, &c, 0);
	if (n != c.seen)
		return -1;
	return c.sum * 100 + c.seen;
}

char LICENSE[] SEC("license") = "GPL";
