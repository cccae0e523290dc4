// SPDX-License-Identifier: GPL-2.0
/* A per-CPU counter seen from a program and from the syscall side.
 *
 * `hits` is a PERCPU_ARRAY with a 4-byte value: a program's lookup returns a pointer to *this
 * CPU's* 4 bytes, and nothing else; bpf(BPF_MAP_LOOKUP_ELEM) from user space copies every
 * possible CPU's value, each padded to round_up(4, 8) = 8 bytes.
 *
 *   count:   hits[0] += 1 on this CPU's copy (a plain add: no other CPU writes it), total[0] += 1
 *            atomically, and seen[0] = this CPU's copy after the add: what the program "sees".
 *   report:  seen[1] = this CPU's copy, read once at the end, like a tool's END probe that
 *            happens to run on another CPU. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);		/* 4 bytes: the syscall view pads each CPU's copy to 8 */
} hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} total SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

static void put(__u32 slot, __u64 value)
{
	__u64 *s = bpf_map_lookup_elem(&seen, &slot);

	if (s)
		*s = value;
}

SEC("tracepoint/demo/count")
int count(void *ctx)
{
	__u32 key = 0;
	__u32 *mine = bpf_map_lookup_elem(&hits, &key);
	__u64 *all = bpf_map_lookup_elem(&total, &key);

	if (!mine || !all)
		return 0;
	*mine += 1;
	__sync_fetch_and_add(all, 1);
	put(0, *mine);
	return 0;
}

SEC("tracepoint/demo/report")
int report(void *ctx)
{
	__u32 key = 0;
	__u32 *mine = bpf_map_lookup_elem(&hits, &key);

	put(1, mine ? *mine : ~0ULL);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
