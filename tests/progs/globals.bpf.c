// SPDX-License-Identifier: GPL-2.0
/* Global data: .rodata (read-only to programs, frozen), .data (initialised), .bss (zeroed),
 * string literals in .rodata.str1.1, and bpf_printk. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 scale = 3;		/* .rodata */
const volatile __u64 limits[2] = {100, 200};	/* .rodata */
__u64 total = 5;			/* .data */
struct pair {
	__u32 a;
	__u16 b;
} pair = {7, 9};			/* .data */
__u64 calls;				/* .bss */
__u32 hist[8];				/* .bss */
__u64 last_ns;				/* .bss */
static __u64 hidden;			/* .bss, a static variable */

/* calls += 1; total += scale; hist[calls & 7] += 1; prints and returns total. */
SEC("tracepoint/demo/bump")
int bump(void *ctx)
{
	calls += 1;
	total += scale;
	hidden += 2;
	hist[calls & 7] += 1;
	last_ns = bpf_ktime_get_ns();
	bpf_printk("total=%llu calls=%llu", total, calls);
	return total;
}

/* Sums values that only a relocation into .rodata and .data can reach. */
SEC("tp/demo/read")
int read_all(void *ctx)
{
	bpf_trace_printk("limits %llu %llu\n", sizeof("limits %llu %llu\n"), limits[0], limits[1]);
	return limits[0] + limits[1] + pair.a + pair.b + hidden;
}

/* Writes a .rodata variable through a cast: the region is read-only, so this faults. */
SEC("tp/demo/bad")
int write_rodata(void *ctx)
{
	*(volatile __u32 *)&scale = 7;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
