// SPDX-License-Identifier: GPL-2.0
/* LRU_HASH and LRU_PERCPU_HASH filled from a program beyond max_entries: the update succeeds
 * by evicting, and BPF_F_NO_COMMON_LRU gives every CPU its own LRU list (and share of nodes). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} lru SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, __u32);
	__type(value, __u64);
} lru_own_lists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 8);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, __u32);
	__type(value, __u64);
} lru_percpu SEC(".maps");

struct insert_ctx {
	__u32 which;	/* 0: lru, 1: lru_own_lists, 2: lru_percpu */
	__u32 key;
};

/* map[key] = key * 10 + 1 (this CPU's copy for lru_percpu); returns the update's result. */
SEC("tracepoint/demo/insert")
long insert(struct insert_ctx *ctx)
{
	__u32 key = ctx->key;
	__u64 val = key * 10 + 1;
	if (ctx->which == 0)
		return bpf_map_update_elem(&lru, &key, &val, BPF_ANY);
	if (ctx->which == 1)
		return bpf_map_update_elem(&lru_own_lists, &key, &val, BPF_ANY);
	return bpf_map_update_elem(&lru_percpu, &key, &val, BPF_ANY);
}

/* A lookup from a program marks the element referenced; returns its value or 0 if absent. */
SEC("tracepoint/demo/touch")
__u64 touch(struct insert_ctx *ctx)
{
	__u32 key = ctx->key;
	__u64 *v = bpf_map_lookup_elem(&lru, &key);
	return v ? *v : 0;
}

char LICENSE[] SEC("license") = "GPL";
