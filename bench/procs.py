"""Child processes: pinning, measuring (wall, user+sys CPU, peak RSS) and reading their output.

CPU and peak RSS come from ``wait4`` (the kernel's rusage of that one child), so nothing
the harness does is counted. ``taskset`` execs the command, so the PID is the client's own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
CLIENT_CORE = 0
SERVER_CORE = 1


class BenchFailure(RuntimeError):
    """A run that did not do the work asked (wrong record count, failed rows, exit code).

    ``brief``: one line for a table cell ("failed: <brief>"); the message has the output's tails.
    """

    def __init__(self, message: str, brief: str = "") -> None:
        super().__init__(message)
        self.brief = brief or message.splitlines()[0][:200]


class RunHung(BenchFailure):
    """A run killed by its watchdog: it had not finished ``after_s`` seconds after it started."""

    def __init__(self, what: str, after_s: float) -> None:
        super().__init__(f"{what}: still running after {after_s:.0f} s, killed", f"hung after {after_s:.0f} s")
        self.after_s = after_s


def pinning_available() -> bool:
    return (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None


def pinned(core: int, argv: Sequence[str]) -> list[str]:
    """``argv`` run on one core (``taskset -c``), or unchanged on a 1-core machine."""
    if pinning_available():
        return ["taskset", "-c", str(core), *argv]
    return list(argv)


def cpu_seconds(pid: int) -> float:
    """user+sys CPU of a live process, from /proc (10 ms resolution)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def busy_processes(interval_s: float = 1.0, threshold_pct: float = 10.0) -> list[str]:
    """Other processes using more than ``threshold_pct`` of a core: they disturb the numbers."""

    def snapshot() -> dict[int, tuple[str, float]]:
        found = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/comm") as f:
                        name = f.read().strip()
                    found[int(entry)] = (name, cpu_seconds(int(entry)))
                except (OSError, ValueError, IndexError):
                    pass
        return found

    before = snapshot()
    time.sleep(interval_s)
    after = snapshot()
    busy = []
    for pid, (name, cpu) in after.items():
        if pid in before and pid != os.getpid():
            pct = 100 * (cpu - before[pid][1]) / interval_s
            if pct >= threshold_pct:
                busy.append(f"{name} (PID {pid}, {pct:.0f} %)")
    return busy


def _machine_busy_s() -> float:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _TICK


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class LoadMeter:
    """CPU that processes other than the bench used while it measured (a shared machine's noise)."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self._busy0 = _machine_busy_s()
        self._own0 = _own_cpu_s()

    def other_pct(self, own_running_s: float = 0.0) -> float:
        """Other processes' CPU as % of the whole machine; ``own_running_s``: CPU of our live children."""
        elapsed = time.monotonic() - self._t0
        other = (_machine_busy_s() - self._busy0) - (_own_cpu_s() - self._own0) - own_running_s
        return max(0.0, 100 * other / (elapsed * (os.cpu_count() or 1))) if elapsed > 0 else 0.0


@dataclass
class Outcome:
    """What one measured child process did."""

    returncode: int
    wall_s: float
    cpu_s: float
    maxrss_kb: int
    counts: dict[str, int]
    head_tail: bytes  # the first and last 32 KB of stdout
    stderr: str
    parent_rss_kb: int = 0  # the harness's RSS when it forked: a floor under maxrss_kb (Linux)
    marker_s: float | None = None  # wall time when the marker first appeared
    marker_cpu_s: float | None = None  # the child's CPU at that moment
    rss_samples: list[tuple[int, int]] = field(default_factory=list)  # (records so far, RSS KB)
    timed_out: bool = False  # killed by the watchdog after ``timeout_s``


def run_measured(
    argv: Sequence[str],
    count: Sequence[bytes] = (),
    marker: bytes | None = None,
    sample_rss_every_s: float | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = 3600,
    cwd: Path | None = None,
) -> Outcome:
    """Run ``argv``, stream its stdout, count occurrences of ``count`` patterns, and measure it.

    ``marker``: when this byte string first appears on stdout, note the wall time and the
    child's CPU so far (for the connector: its STREAM_STATUS STARTED, i.e. start-up done).
    """
    with tempfile.TemporaryFile() as err:
        parent_rss = rss_kb(os.getpid())
        started = time.perf_counter()
        # Its own process group, so that the watchdog also ends what it started (a helper process holding
        # stdout open would keep the read below waiting after the client itself was killed).
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=err, env=env, cwd=cwd,
                                start_new_session=True)
        assert proc.stdout is not None
        fired = threading.Event()

        def kill() -> None:
            fired.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                proc.kill()

        watchdog = threading.Timer(timeout_s, kill)  # a hung child must not hang the bench
        watchdog.daemon = True
        watchdog.start()
        fd = proc.stdout.fileno()
        counts = dict.fromkeys((p.decode() for p in count), 0)
        keep = max([len(p) for p in count] + [len(marker or b"")] + [1]) - 1
        tail = b""
        head = b""
        last = b""
        marker_s = marker_cpu = None
        samples: list[tuple[int, int]] = []
        next_sample = started + (sample_rss_every_s or 0)
        first_pattern = count[0] if count else b""
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            window = tail + chunk
            for pattern in count:
                # only the last len-1 bytes of the previous read: a whole match there was counted already
                overlap = tail[max(0, len(tail) - (len(pattern) - 1)):] if len(pattern) > 1 else b""
                counts[pattern.decode()] += (overlap + chunk).count(pattern)
            if marker is not None and marker_s is None and marker in window:
                marker_s = time.perf_counter() - started
                try:
                    marker_cpu = cpu_seconds(proc.pid)
                except OSError:
                    marker_cpu = None
            tail = window[-keep:] if keep else b""
            if len(head) < 32768:
                head += chunk[: 32768 - len(head)]
            last = (last + chunk)[-32768:]
            if sample_rss_every_s and time.perf_counter() >= next_sample:
                samples.append((counts.get(first_pattern.decode(), 0), rss_kb(proc.pid)))
                next_sample += sample_rss_every_s
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        watchdog.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    return Outcome(
        returncode=proc.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        maxrss_kb=usage.ru_maxrss,
        counts=counts,
        head_tail=head + b"\n...\n" + last,
        stderr=stderr,
        parent_rss_kb=parent_rss,
        marker_s=marker_s,
        marker_cpu_s=marker_cpu,
        rss_samples=samples,
        timed_out=fired.is_set(),
    )


class Background:
    """A long-running child (the mock endpoint) started pinned and stopped by its PID."""

    def __init__(self, argv: Sequence[str], ready_prefix: bytes, log: Path) -> None:
        self._log = log.open("wb")
        self.proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=self._log)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(ready_prefix):
            self.stop()
            raise BenchFailure(f"{argv}: did not start ({line!r}); see {log}")
        self.ready_line = line.decode().strip()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, 9)
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
