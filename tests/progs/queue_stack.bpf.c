// SPDX-License-Identifier: GPL-2.0
/* QUEUE (FIFO) and STACK (LIFO) maps driven by bpf_map_push_elem/pop_elem/peek_elem; each
 * program returns the helper's result, and the value popped or peeked lands in `last`. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 3);
	__uint(value_size, sizeof(__u64));
} queue SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK);
	__uint(max_entries, 3);
	__uint(value_size, sizeof(__u64));
} stack SEC(".maps");

__u64 last;				/* .bss: the value the last pop/peek returned */

struct op_ctx {
	__u32 is_stack;
	__u32 flags;
	__u64 value;
};

static void *pick(struct op_ctx *ctx)
{
	return ctx->is_stack ? (void *)&stack : (void *)&queue;
}

SEC("tracepoint/demo/push")
long push(struct op_ctx *ctx)
{
	__u64 v = ctx->value;
	return bpf_map_push_elem(pick(ctx), &v, ctx->flags);
}

SEC("tracepoint/demo/pop")
long pop(struct op_ctx *ctx)
{
	__u64 v = 0;
	long err = bpf_map_pop_elem(pick(ctx), &v);
	last = v;
	return err;
}

SEC("tracepoint/demo/peek")
long peek(struct op_ctx *ctx)
{
	__u64 v = 0;
	long err = bpf_map_peek_elem(pick(ctx), &v);
	last = v;
	return err;
}

char LICENSE[] SEC("license") = "GPL";
