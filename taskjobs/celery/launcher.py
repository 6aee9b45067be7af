"""A real ``celery worker`` subprocess: started, awaited until ready, stopped.

One launcher for everything that runs workers of its own: ``taskjobs demo``, the acceptance
tests and the benchmarks. It runs ``python -m celery`` and never imports Celery itself.

    with start_worker("proj.app", log=Path("w.log"), queues=["jobs"]) as worker:
        worker.wait_ready()
        ...  # the worker stops (warm shutdown, then SIGKILL) when the block ends

Each worker is the leader of a process group of its own (its pool processes join it), so a
worker that will not stop is killed with every process it started, and a terminal's Ctrl-C
reaches only its starter, which stops it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from taskjobs.errors import TaskJobsError

# Seconds a worker may take to log that it is ready.
READY_TIMEOUT = 60
# Seconds a worker may take to stop after its signal before it is killed.
STOP_TIMEOUT = 30
# Seconds the pool processes left behind by a worker that has exited may take to leave.
GROUP_GRACE = 10
# What Celery logs (at INFO) once it consumes: "celery@host ready."
READY_LINE = " ready."
# Characters of the log (and of the output) that an error shows.
TAIL_CHARS = 3000


class WorkerStartError(TaskJobsError):
    """A worker exited at start or was not ready in time; the message has its log's tail."""


@dataclasses.dataclass
class Worker:
    """A running ``celery worker``: its process, node name, log file and output file."""

    process: subprocess.Popen[bytes]
    name: str
    log: Path
    output: Path
    stop_timeout: float
    _output_stream: IO[bytes] = dataclasses.field(repr=False)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return _read(self.log)

    def tail(self, chars: int = TAIL_CHARS) -> str:
        """The end of the worker's log, and of its output (stdout and stderr) when it has one:
        an error before logging starts (an app that does not import) is only there."""
        text = f"{self.log}:\n{self.log_text()[-chars:]}"
        output = _read(self.output)
        return f"{text}\n{self.output}:\n{output[-chars:]}" if output else text

    def wait_ready(
        self,
        timeout: float = READY_TIMEOUT,
        until: Callable[[], bool] | None = None,
        interval: float = 0.1,
    ) -> None:
        """Return once the worker is ready: its log says so, or ``until()`` is true. Raises
        ``WorkerStartError`` when it exits first or ``timeout`` seconds pass."""
        ready = until or (lambda: READY_LINE in self.log_text())
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.alive():
                raise WorkerStartError(
                    f"worker {self.name} exited at start (status {self.process.returncode}):\n"
                    + self.tail()
                )
            if time.monotonic() > deadline:
                raise WorkerStartError(
                    f"worker {self.name} not ready in {timeout}s:\n{self.tail()}"
                )
            time.sleep(interval)

    def stop(self, sig: int = signal.SIGTERM, timeout: float | None = None) -> int:
        """Send ``sig`` (SIGTERM: warm shutdown), SIGKILL its process group after ``timeout``
        seconds (default: the worker's ``stop_timeout``); then kill what is left of the group.
        Returns the worker's exit status (negative: the signal that ended it). Safe to call
        again, and on a worker already dead."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)
            try:
                self.process.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                _kill_group(self.process.pid)
                self.process.wait()
        # Pool processes normally leave with their parent; stragglers (of a worker that was
        # killed, say) go after a grace period.
        deadline = time.monotonic() + GROUP_GRACE
        while _group_alive(self.process.pid):
            if time.monotonic() > deadline:
                _kill_group(self.process.pid)
                break
            time.sleep(0.1)
        self._output_stream.close()
        return self.process.returncode

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_worker(
    app: str,
    *,
    log: Path,
    pool: str = "prefork",
    concurrency: int | None = None,
    hostname: str | None = None,
    queues: Sequence[str] = (),
    loglevel: str = "INFO",
    without: Sequence[str] = ("mingle", "gossip"),
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    base_env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    output: Path | None = None,
    stop_timeout: float = STOP_TIMEOUT,
) -> Worker:
    """Start ``celery -A app worker`` and return at once (``wait_ready`` waits).

    ``without``: the start-up steps turned off (``--without-<step>``), by default the
    exchanges with other workers, which a lone worker only waits for. ``env`` is added to
    ``base_env`` (default: this process's environment). ``output`` receives the worker's
    stdout and stderr (default: next to ``log``, suffix ``.out``). ``stop_timeout``: the
    seconds ``stop()`` (and the end of a ``with`` block) waits before it kills the worker.
    """
    output = output or log.with_suffix(".out")
    command = [sys.executable, "-m", "celery", "-A", app, "worker", "-P", pool]
    if concurrency is not None:
        command += ["-c", str(concurrency)]
    if hostname is not None:
        command += ["-n", hostname]
    if queues:
        command += ["-Q", ",".join(queues)]
    command += ["-l", loglevel, "--logfile", str(log)]
    command += [f"--without-{step}" for step in without]
    command += args
    stream = open(output, "wb")  # noqa: SIM115 (closed by Worker.stop)
    try:
        process = subprocess.Popen(
            command,
            env={**(os.environ if base_env is None else base_env), **(env or {})},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except BaseException:
        stream.close()
        raise
    name = (hostname or "celery@%h").replace("%h", socket.gethostname())
    return Worker(process, name, log, output, stop_timeout, stream)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _kill_group(group: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal is still a member
        return True
    return True
