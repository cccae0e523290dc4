// SPDX-License-Identifier: GPL-2.0
/* A PERF_EVENT_ARRAY declared without max_entries: libbpf sizes it to the CPU count. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

SEC("tracepoint/demo/emit")
int emit(void *ctx)
{
	__u64 data = bpf_get_smp_processor_id();
	return bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &data, sizeof(data));
}

char LICENSE[] SEC("license") = "GPL";
