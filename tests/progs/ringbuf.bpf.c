// SPDX-License-Identifier: GPL-2.0
/* A BPF ring buffer written through every producer helper: reserve/submit/discard (131–133),
 * output (130), query (134), and the dynptr interface (197–203). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} rb SEC(".maps");

/* Bytes that bpf_ringbuf_output copies into the ring; user space fills them. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__uint(value_size, 2048);
} payload SEC(".maps");

struct record {
	__u64 tag;
	__u32 cpu;
	__u32 len;
};

struct reserve_ctx {
	__u64 tag;
	__u32 discard;
};

/* Reserves a 16-byte record, fills it, then submits or discards it.
 * Returns 1 when the reservation succeeded, 0 when reserve gave NULL (the ring is full). */
SEC("tracepoint/demo/reserve")
int reserve(struct reserve_ctx *ctx)
{
	struct record *r = bpf_ringbuf_reserve(&rb, sizeof(*r), 0);
	if (!r)
		return 0;
	r->tag = ctx->tag;
	r->cpu = bpf_get_smp_processor_id();
	r->len = sizeof(*r);
	if (ctx->discard)
		bpf_ringbuf_discard(r, 0);
	else
		bpf_ringbuf_submit(r, 0);
	return 1;
}

/* Copies the first ctx[0] bytes of `payload` into a new record; returns the helper's result. */
SEC("tracepoint/demo/output")
long output(__u32 *ctx)
{
	__u32 key = 0;
	void *data = bpf_map_lookup_elem(&payload, &key);
	if (!data)
		return -1;
	return bpf_ringbuf_output(&rb, data, ctx[0], 0);
}

/* bpf_ringbuf_query(&rb, ctx[0]): BPF_RB_AVAIL_DATA, _RING_SIZE, _CONS_POS or _PROD_POS. */
SEC("tracepoint/demo/query")
__u64 query(__u64 *ctx)
{
	return bpf_ringbuf_query(&rb, ctx[0]);
}

/* A 16-byte record through a dynptr: the tag written with bpf_dynptr_write, read back with
 * bpf_dynptr_read, the CPU stored through the pointer bpf_dynptr_data gives; submitted or
 * discarded.  Returns the reservation's error, 2 if the read-back differs, else 1. */
SEC("tracepoint/demo/dynptr")
long dynptr(struct reserve_ctx *ctx)
{
	struct bpf_dynptr ptr;
	__u64 tag = ctx->tag, back = 0;
	long err = bpf_ringbuf_reserve_dynptr(&rb, sizeof(struct record), 0, &ptr);
	if (err) {
		/* Linux requires the dynptr released even when the reservation failed. */
		bpf_ringbuf_discard_dynptr(&ptr, 0);
		return err;
	}
	bpf_dynptr_write(&ptr, 0, &tag, sizeof(tag), 0);
	__u32 *tail = bpf_dynptr_data(&ptr, 8, 8);
	if (tail) {
		tail[0] = bpf_get_smp_processor_id();
		tail[1] = 0xd9;
	}
	bpf_dynptr_read(&back, sizeof(back), &ptr, 0, 0);
	if (ctx->discard)
		bpf_ringbuf_discard_dynptr(&ptr, 0);
	else
		bpf_ringbuf_submit_dynptr(&ptr, 0);
	return back == tag ? 1 : 2;
}

/* A dynptr over the program's own stack (bpf_dynptr_from_mem): writes past its end fail with
 * -E2BIG, in-bounds writes land in the buffer.  Returns buf[0] + buf[1] * 256 on success. */
SEC("tracepoint/demo/local")
long local_dynptr(void *ctx)
{
	struct bpf_dynptr ptr;
	__u8 buf[8] = {};
	__u8 two[2] = {0x34, 0x12};
	long err = bpf_dynptr_from_mem(buf, sizeof(buf), 0, &ptr);
	if (err)
		return err;
	err = bpf_dynptr_write(&ptr, 7, two, sizeof(two), 0);
	if (err != -7 /* -E2BIG */)
		return 1000 + err;
	err = bpf_dynptr_write(&ptr, 0, two, sizeof(two), 0);
	if (err)
		return err;
	return buf[0] + buf[1] * 256;
}

char LICENSE[] SEC("license") = "GPL";
