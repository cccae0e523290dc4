// SPDX-License-Identifier: GPL-2.0
/* One event, sent to user space through a BPF ring buffer or a perf buffer.
 *
 * Each record is 24 bytes: a timestamp, this CPU's sequence number and the CPU.  The context is
 * one u32, `every`, the producer's notification choice for the ring buffer:
 *   every = 0   flags 0: the kernel decides (it wakes the reader only when the reader has
 *               caught up to this very record)
 *   every = 1   BPF_RB_FORCE_WAKEUP on every record
 *   every = N   BPF_RB_FORCE_WAKEUP on every Nth record of this CPU, BPF_RB_NO_WAKEUP on the
 *               others (the kernel bench's "sampled" mode)
 * The perf buffer has no such flag: its event wakes the reader every `wakeup_events` samples,
 * which user space sets when it opens the event.
 *
 * stats (per CPU): [0] records attempted, [1] ring buffer reservations that failed (the ring
 * was full: the record is dropped and only this program knows), [2] perf outputs that failed. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct event {
	__u64 ts;
	__u64 seq;
	__u32 cpu;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16384);		/* one ring shared by every CPU: 16 KiB */
} rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));	/* one slot per CPU (libbpf's default) */
} pb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __u64 *stat(__u32 slot)
{
	return bpf_map_lookup_elem(&stats, &slot);
}

SEC("tracepoint/demo/rb")
int rb_emit(__u32 *ctx)
{
	__u32 every = ctx[0];
	__u64 *seq = stat(0), *drops = stat(1), flags = 0;
	struct event *e;

	if (!seq || !drops)
		return 0;
	e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
	if (!e) {
		*drops += 1;
		*seq += 1;
		return 0;
	}
	e->ts = bpf_ktime_get_ns();
	e->seq = *seq;
	e->cpu = bpf_get_smp_processor_id();
	e->pad = 0;
	if (every == 1)
		flags = BPF_RB_FORCE_WAKEUP;
	else if (every > 1)
		flags = (*seq % every == 0) ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	*seq += 1;
	bpf_ringbuf_submit(e, flags);
	return 1;
}

SEC("tracepoint/demo/pb")
int pb_emit(__u32 *ctx)
{
	__u64 *seq = stat(0), *errs = stat(2);
	struct event e = {};

	if (!seq || !errs)
		return 0;
	e.ts = bpf_ktime_get_ns();
	e.seq = *seq;
	e.cpu = bpf_get_smp_processor_id();
	*seq += 1;
	if (bpf_perf_event_output(ctx, &pb, BPF_F_CURRENT_CPU, &e, sizeof(e))) {
		*errs += 1;
		return 0;
	}
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
