"""The trace pipe: where ``bpf_trace_printk`` output goes, with the line prefix Linux adds.

Each message is kept with the CPU, the simulated time and the task that printed it, so that
``trace_lines()`` can return the bare text and a scenario can show the full trace_pipe line.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TraceRecord:
    cpu: int
    time_ns: int
    pid: int
    comm: str
    text: str

    def pipe_line(self) -> str:
        """The line as ``/sys/kernel/tracing/trace_pipe`` shows it."""
        secs, ns = divmod(self.time_ns, 1_000_000_000)
        head = f"{self.comm}-{self.pid}".rjust(22)
        return f"{head} [{self.cpu:03d}] d..31 {secs:5d}.{ns // 1000:06d}: bpf_trace_printk: {self.text}"


class TracePipe:
    def __init__(self) -> None:
        self.records: list[TraceRecord] = []

    def write(self, record: TraceRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[str]:
        """Every message's text, split on newlines, the trailing newline dropped."""
        out: list[str] = []
        for rec in self.records:
            text = rec.text[:-1] if rec.text.endswith("\n") else rec.text
            out.extend(text.split("\n"))
        return out
