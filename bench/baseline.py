"""The reference interpreter loop every benchmark here compares against, timed in the same run.

A bare Python dispatch loop over three tuple-encoded instructions computing ``sum(range(N))``
(the engine issue's baseline, verbatim in behaviour): instructions per second of this loop is
"1.0×".
"""


def baseline(n_iter: int) -> int:
    """Run the reference loop for ``n_iter`` iterations; returns the instructions it ran."""
    code = [(0, 0, 1), (1, 1, 1), (2, 1, n_iter)]
    regs = [0, 0]
    pc = 0
    n = 0
    while True:
        op, a, b = code[pc]
        n += 1
        if op == 0:
            regs[0] = (regs[0] + regs[1]) & 0xFFFFFFFFFFFFFFFF
            pc = 1
        elif op == 1:
            regs[1] = (regs[1] + b) & 0xFFFFFFFFFFFFFFFF
            pc = 2
        else:
            if regs[1] < b:
                pc = 0
            else:
                break
    return n
