# percpu[0] += 1 on this CPU's copy of a PERCPU_ARRAY value: a plain load, add and store.
# No other CPU ever writes this copy, so nothing is lost, and its line never leaves this core.
    call 7                      # r0 = bpf_get_prandom_u32(): the program's other work
    and %r0, 63                 # takes 0-63 loop turns, so the CPUs do not run in lockstep
work:
    jeq %r0, 0, count
    sub %r0, 1
    ja work
count:
    stw [%r10-4], 0             # u32 key = 0, on the stack
    mov %r2, %r10
    add %r2, -4                 # r2 = &key
    lddw %r1, map_fd percpu     # r1 = the map (relocated at load)
    call 1                      # r0 = this CPU's copy of value 0
    jeq %r0, 0, out
    ldxdw %r1, [%r0]
    add %r1, 1
    stxdw [%r0], %r1
out:
    mov %r0, 0
    exit
