// SPDX-License-Identifier: GPL-2.0
/* The remaining helpers, each called from a program and its result stored in `.bss` for user
 * space to read: printk, the ids and clocks, the probe_read family, per-CPU lookup, and the
 * update/delete flags; and a tracepoint program that reads its context. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} per_cpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[16]);
} names SEC(".maps");

struct ids {
	__u32 rand[2];
	__u32 cpu;
	__u32 comm_err;
	__u64 mono[2];
	__u64 boot[2];
	__u64 pid_tgid;
	char comm[16];
} ids;

struct probes {
	__u64 copy;		/* 8 bytes of the program's stack, via probe_read_kernel */
	long copy_err;
	char str[8];		/* a map value's string, via probe_read_kernel_str into 8 bytes */
	long str_len;
	__u64 bad;		/* probe_read_kernel from NULL: zeroed on failure */
	long bad_err;
	__u64 user;		/* probe_read_user from a user address: the idle task has none */
	long user_err;
	char user_str[8];
	long user_str_err;
	__u64 legacy;		/* bpf_probe_read (4) of the stack: a kernel address */
	long legacy_err;
	__u64 legacy_user;	/* bpf_probe_read of a user address: read as user memory */
	long legacy_user_err;
} probes;

/* bpf_printk with at most three arguments uses bpf_trace_printk; with more, bpf_trace_vprintk. */
SEC("tracepoint/demo/print")
int print(void *ctx)
{
	char name[] = "kbpf";
	bpf_printk("d=%d u=%u x=%x", -5, 4000000000u, 0xbeef);
	bpf_printk("s=%s llu=%llu d=%d x=%llx", name, 1ULL << 40, -1, 0xfeedULL);
	return 0;
}

SEC("tracepoint/demo/ids")
int get_ids(void *ctx)
{
	ids.rand[0] = bpf_get_prandom_u32();
	ids.rand[1] = bpf_get_prandom_u32();
	ids.cpu = bpf_get_smp_processor_id();
	ids.mono[0] = bpf_ktime_get_ns();
	ids.boot[0] = bpf_ktime_get_boot_ns();
	ids.pid_tgid = bpf_get_current_pid_tgid();
	ids.comm_err = bpf_get_current_comm(ids.comm, sizeof(ids.comm));
	ids.mono[1] = bpf_ktime_get_ns();
	ids.boot[1] = bpf_ktime_get_boot_ns();
	return 0;
}

/* ctx[0] is a user-space address to try. */
SEC("tracepoint/demo/probe")
int probe(__u64 *ctx)
{
	__u64 secret = 0x1122334455667788ULL;
	__u32 key = 0;
	char *name = bpf_map_lookup_elem(&names, &key);
	if (!name)
		return 1;
	probes.copy_err = bpf_probe_read_kernel(&probes.copy, sizeof(probes.copy), &secret);
	probes.str_len = bpf_probe_read_kernel_str(probes.str, sizeof(probes.str), name);
	probes.bad = 0xff;
	probes.bad_err = bpf_probe_read_kernel(&probes.bad, sizeof(probes.bad), (void *)0);
	probes.user = 0xff;
	probes.user_err = bpf_probe_read_user(&probes.user, sizeof(probes.user), (void *)ctx[0]);
	probes.user_str_err = bpf_probe_read_user_str(probes.user_str, sizeof(probes.user_str),
						      (void *)ctx[0]);
	probes.legacy_err = bpf_probe_read(&probes.legacy, sizeof(probes.legacy), &secret);
	probes.legacy_user = 0xff;
	probes.legacy_user_err = bpf_probe_read(&probes.legacy_user, sizeof(probes.legacy_user),
						(void *)ctx[0]);
	return 0;
}

/* This CPU's copy of per_cpu[0] = cpu * 100 + 1. */
SEC("tracepoint/demo/stamp")
int stamp(void *ctx)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&per_cpu, &key);
	if (!v)
		return 1;
	*v = bpf_get_smp_processor_id() * 100 + 1;
	return 0;
}

/* per_cpu[0] as CPU ctx[0] sees it, from whichever CPU runs this; -1 if the lookup gives NULL. */
SEC("tracepoint/demo/peek_cpu")
__u64 peek_cpu(__u32 *ctx)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_percpu_elem(&per_cpu, &key, ctx[0]);
	return v ? *v : (__u64)-1;
}

struct update_ctx {
	__u32 key;
	__u32 flags;
	__u64 value;
};

SEC("tracepoint/demo/update")
long update(struct update_ctx *ctx)
{
	__u32 key = ctx->key;
	__u64 value = ctx->value;
	return bpf_map_update_elem(&table, &key, &value, ctx->flags);
}

SEC("tracepoint/demo/delete")
long delete(struct update_ctx *ctx)
{
	__u32 key = ctx->key;
	return bpf_map_delete_elem(&table, &key);
}

struct x_args {
	__u64 a;
	__u32 b;
	__u32 c;
};

/* Attached to demo/x: table[cpu] += a * b + c, read from the tracepoint's context. */
SEC("tracepoint/demo/x")
int on_x(struct x_args *args)
{
	__u32 key = bpf_get_smp_processor_id();
	__u64 add = args->a * args->b + args->c;
	__u64 *v = bpf_map_lookup_elem(&table, &key);
	if (v) {
		__sync_fetch_and_add(v, add);
		return 1;
	}
	bpf_map_update_elem(&table, &key, &add, BPF_NOEXIST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
