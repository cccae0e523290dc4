// SPDX-License-Identifier: GPL-2.0
/* The producer side of the kernel's ring buffer / perf buffer benchmark (selftests/bpf
 * benchs/bench_ringbufs.c, Andrii Nakryiko, 2020): each invocation stands for one
 * getpgid() syscall of a producer thread, whose fentry program pushes a batch of 8-byte
 * records in a tight loop and counts the ones it could not push.
 *
 * The context: {batch, rate}.  rate = 0: submit with flags 0 (the kernel decides when to wake
 * the reader); rate = N > 0: BPF_RB_NO_WAKEUP, and BPF_RB_FORCE_WAKEUP on every Nth record of
 * this CPU (the bench's "sampled" ring-buffer mode).  The perf buffer's sampling is the
 * event's wakeup_events, set by the reader.
 *
 * drops (per CPU): [0] failed ring-buffer reservations, [1] failed perf outputs, [2] this CPU's
 * records so far (the sampled mode's counter). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 512 * 1024);	/* the bench's default ring: 512 KiB */
} ringbuf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perfbuf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

static void count(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&drops, &slot);

	if (v)
		*v += 1;
}

SEC("fentry/getpgid_rb")
int rb_batch(__u32 *ctx)
{
	__u32 batch = ctx[0], rate = ctx[1], slot = 2;
	__u64 *seq = bpf_map_lookup_elem(&drops, &slot);
	__u64 *sample, flags = 0;

	if (!seq)
		return 0;
	for (__u32 i = 0; i < batch; i++) {
		sample = bpf_ringbuf_reserve(&ringbuf, sizeof(*sample), 0);
		if (!sample) {
			count(0);
			continue;
		}
		*sample = 42;
		if (rate) {
			*seq += 1;
			flags = (*seq % rate == 0) ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
		}
		bpf_ringbuf_submit(sample, flags);
	}
	return 0;
}

SEC("fentry/getpgid_pb")
int pb_batch(__u32 *ctx)
{
	__u32 batch = ctx[0];
	__u64 sample = 42;

	for (__u32 i = 0; i < batch; i++)
		if (bpf_perf_event_output(ctx, &perfbuf, BPF_F_CURRENT_CPU, &sample, sizeof(sample)))
			count(1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
