# counters[0] += 1 with one atomic read-modify-write (clang's __sync_fetch_and_add).
    call 7                      # r0 = bpf_get_prandom_u32(): the program's other work
    and %r0, 63                 # takes 0-63 loop turns, so the CPUs do not run in lockstep
work:
    jeq %r0, 0, count
    sub %r0, 1
    ja work
count:
    stw [%r10-4], 0
    mov %r2, %r10
    add %r2, -4
    lddw %r1, map_fd atomic
    call 1
    jeq %r0, 0, out
    mov %r1, 1
    lock add [%r0], %r1
out:
    mov %r0, 0
    exit
