# counters[0] += 1 the plain way: a load, an add and a store.
# Two CPUs doing this at once can both load the same old value: one increment is lost.
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
    lddw %r1, map_fd plain      # r1 = the map (relocated at load)
    call 1                      # r0 = bpf_map_lookup_elem(map, &key)
    jeq %r0, 0, out             # NULL: nothing to count
    ldxdw %r1, [%r0]
    add %r1, 1
    stxdw [%r0], %r1
out:
    mov %r0, 0
    exit
