// SPDX-License-Identifier: GPL-2.0
/* bpf_perf_event_output (25) of variable-size samples into a PERF_EVENT_ARRAY declared without
 * max_entries (one slot per CPU), with BPF_F_CURRENT_CPU or an explicit index. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

struct emit_ctx {
	__u64 flags;	/* BPF_F_CURRENT_CPU, or an index into `events` */
	__u32 seq;
	__u32 len;	/* bytes of the sample to send, at most 64 */
};

/* Sends {seq, cpu, 0xa5 0xa5 ...} truncated to ctx->len bytes; returns the helper's result. */
SEC("tracepoint/demo/emit")
long emit(struct emit_ctx *ctx)
{
	__u8 sample[64];
	__u32 *head = (__u32 *)sample;
	__builtin_memset(sample, 0xa5, sizeof(sample));
	head[0] = ctx->seq;
	head[1] = bpf_get_smp_processor_id();
	__u32 len = ctx->len;
	if (len > sizeof(sample))
		len = sizeof(sample);
	return bpf_perf_event_output(ctx, &events, ctx->flags, sample, len);
}

char LICENSE[] SEC("license") = "GPL";
