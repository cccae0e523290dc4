// SPDX-License-Identifier: GPL-2.0
/* BTF kinds clang-14 emits beyond the usual ones: UNION, ENUM, FWD, FLOAT, RESTRICT, CONST,
 * VOLATILE, DECL_TAG, TYPE_TAG, FUNC_PROTO through a function pointer, and bitfields. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

enum color { RED = 1, GREEN = 2, BLUE = -4 };
struct opaque;				/* FWD */

struct shape {
	enum color color;
	union {
		__u32 as_u32;
		float as_float;
	} u;
	double weight;
	unsigned int flag : 1;
	unsigned int level : 7;
	struct opaque *handle;
	int (*callback)(int, long);
	const volatile __u16 cv;
	__u8 bytes[3][5];
} __attribute__((btf_decl_tag("shape_tag")));

typedef struct shape shape_t;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, shape_t);
} shapes SEC(".maps");

int __attribute__((btf_type_tag("user"))) *tagged_ptr;

static __noinline int scale_all(int *restrict dst, const int *restrict src)
{
	*dst = *src * 2;
	return *dst;
}

SEC("xdp")
int shape_xdp(struct xdp_md *ctx)
{
	__u32 key = 0;
	int a = 1, b = 2;
	shape_t *s = bpf_map_lookup_elem(&shapes, &key);
	if (!s)
		return XDP_ABORTED;
	s->flag = 1;
	s->level = 5;
	return scale_all(&a, &b) == 4 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
