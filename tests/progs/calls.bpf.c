// SPDX-License-Identifier: GPL-2.0
/* bpf-to-bpf calls: static and global subprograms in .text, a subprogram calling another, and
 * two programs sharing them (each gets its own appended copy). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

static __noinline __u64 square(__u64 x)
{
	return x * x;
}

/* Global: clang calls it through a relocation against its own symbol. */
__noinline __u64 add3(__u64 a, __u64 b, __u64 c)
{
	return a + b + c;
}

static __noinline __u64 sum_of_squares(__u64 a, __u64 b)
{
	return square(a) + square(b);
}

/* ctx holds two u64: returns a*a + b*b + (a + b + 1). */
SEC("tracepoint/demo/calc")
int calc(__u64 *ctx)
{
	__u64 a = ctx[0], b = ctx[1];
	return sum_of_squares(a, b) + add3(a, b, 1);
}

/* Uses square only: its copy of square sits at a different offset than in calc. */
SEC("tp/demo/sq")
int only_square(__u64 *ctx)
{
	return square(ctx[0]) + 1;
}

char LICENSE[] SEC("license") = "GPL";
