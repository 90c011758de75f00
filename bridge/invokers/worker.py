"""One execution environment: a worker process polling its own Runtime API, one invocation at a time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bridge.build.setup import Setup
from bridge.config.model import LocalFunctionConfig
from bridge.invokers.endpoints import sdk_variables
from bridge.invokers.memory import MemoryLimits, ResidentWatchLimits, WorkerMemory
from bridge.invokers.runtime_api import Pending, RuntimeApi
from bridge.log import get_logger
from bridge.model import Invocation, error_body

INIT_TIMEOUT = 10.0  # Lambda's init phase limit for on-demand functions
LAST_LINES = 10  # output lines kept to say why a worker died before it was ready
# Passed through from the daemon so handlers can reach AWS as they would with an execution role.
PASS_THROUGH_ENV = ("PATH", "LANG", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                    "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL")


def pdeathsig_launcher() -> tuple[str, ...]:
    """``setpriv --pdeathsig KILL --``: the worker is SIGKILLed when the daemon dies, even by SIGKILL.

    setpriv (util-linux) sets PR_SET_PDEATHSIG and execs the worker: one extra exec, while Popen keeps its
    vfork fast path (a ``preexec_fn`` would force a full fork of the daemon). setpriv also re-applies the
    capability sets (capset), which a seccomp filter may refuse (systemd's ``SystemCallFilter=~@privileged``
    without ``capset``): it is probed once per function, and where it cannot run there is no launcher. An
    orphaned worker then still exits once its Runtime API is gone, and holds the state lock meanwhile.
    """
    setpriv, true = shutil.which("setpriv"), shutil.which("true")
    if setpriv is None or true is None:
        return ()
    launcher = (setpriv, "--pdeathsig", "KILL", "--")
    probe = subprocess.run([*launcher, true], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        get_logger().warning("worker.no_pdeathsig", error=probe.stderr.strip()[:200],
                             fix="allow capset (SystemCallFilter=capset) so workers die with the daemon")
        return ()
    return launcher


@dataclass(frozen=True)
class FunctionSpec:
    """What every worker of one function shares: its config and the names Lambda would give it.

    ``keep_fds``: descriptors every worker inherits (the daemon's state lock: a worker that outlives its
    daemon keeps a new daemon from starting next to it).
    """

    name: str
    config: LocalFunctionConfig
    region: str
    arn: str
    keep_fds: tuple[int, ...] = ()
    endpoints: dict[str, str] = field(default_factory=dict)  # AWS_ENDPOINT_URL_* (bridge/invokers/endpoints.py)
    launcher: tuple[str, ...] = field(default_factory=pdeathsig_launcher)
    setup: Setup | None = None  # interpreter, sys.path and layers (bridge/build); None: the daemon's whole venv

    def command(self) -> list[str]:
        """The worker's argv: awslambdaric for python, ``code/bootstrap`` for provided (after the launcher)."""
        if not self.config.is_python:
            return [*self.launcher, str(self.config.code / "bootstrap")]
        if self.setup is not None:
            return [*self.launcher, *self.setup.python_command(self.config.handler)]
        return [*self.launcher, sys.executable, "-m", "awslambdaric", self.config.handler]

    def environment(self, runtime_api: str, log_stream: str) -> dict[str, str]:
        """Lambda's reserved variables, the user's ``environment:``, and AWS credentials if set."""
        cfg = self.config
        env = {k: os.environ[k] for k in PASS_THROUGH_ENV if k in os.environ}
        env.update(sdk_variables(self.endpoints, cfg.environment))  # under the user's environment:
        env.update(cfg.environment)
        env.update({
            "AWS_LAMBDA_FUNCTION_NAME": self.name, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg.memory_size),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.name}", "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region, "LAMBDA_TASK_ROOT": str(cfg.code),
            "LAMBDA_RUNTIME_DIR": os.path.dirname(sys.executable), "_HANDLER": cfg.handler,
            "AWS_LAMBDA_RUNTIME_API": runtime_api, "TZ": ":UTC", "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "PYTHONPATH": str(cfg.code),
        })
        if self.setup is not None:  # Lambda's sys.path order, without PYTHONPATH; the layers' bin/ and lib/
            del env["PYTHONPATH"]
            env.update(self.setup.variables(env.get("PATH", os.defpath)))
        return env


class Worker:
    """A warm worker process and the Runtime API it polls.

    ``memory``: how memory_size is enforced (a cgroup per worker, or the resident-memory watch).
    """

    def __init__(self, spec: FunctionSpec, on_output: Callable[[Worker, str], None],
                 memory: MemoryLimits | None = None) -> None:
        self.spec = spec
        self.memory: WorkerMemory = (memory or ResidentWatchLimits()).for_worker(
            spec.name, spec.config.memory_size, self._over_limit)
        self.last_output: deque[str] = deque(maxlen=LAST_LINES)
        self.log_stream = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self.api = RuntimeApi(before_settle=self._drain_output, function=spec.name)
        self.proc: subprocess.Popen[bytes] | None = None
        self.exited = asyncio.Event()
        self.exit_reason = ""
        self.current: Pending | None = None
        self._on_output = on_output
        self._partial = b""
        self._status_fd: int | None = None
        self._killed = False
        self._peak_mb: int | None = None  # the high-water mark once the process is gone (None: unknown)

    @property
    def alive(self) -> bool:
        """False once the process has exited or been sent SIGKILL (even before it is reaped)."""
        return self.proc is not None and not self.exited.is_set() and not self._killed

    async def start(self, request_id: str = "") -> bytes | None:
        """Spawn and wait for init; returns None when ready, else the init error body (naming ``request_id``,
        the invocation that waits for this worker). A worker that failed its init is killed."""
        address = await self.api.start()
        try:
            self._spawn(address)
        except OSError as err:  # no launcher in front, and the bootstrap or interpreter cannot be executed
            self.exited.set()
            reason = os.strerror(err.errno or 0).lower()
            message = f"RequestId: {request_id} Error: fork/exec {self.spec.command()[0]}: {reason}"
            return error_body("Runtime.InvalidEntrypoint", message)
        self.memory.watch()  # init runs code too
        try:
            error = await self._await_init(request_id)
        finally:
            self.memory.unwatch()
        if error is not None:
            self.kill()
        return error

    def _spawn(self, address: str) -> None:
        env = self.spec.environment(address, self.log_stream)
        self.proc = subprocess.Popen(
            self.spec.command(), cwd=self.spec.config.code, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, pass_fds=self.spec.keep_fds,
        )
        self.api.owner = self.proc.pid  # set before the loop runs again, so before the worker can connect
        with contextlib.suppress(ProcessLookupError):  # the process may already be gone
            self.memory.adopt(self.proc.pid)
        loop = asyncio.get_running_loop()
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        loop.add_reader(self.proc.stdout.fileno(), self._drain_output)
        self._pidfd = os.pidfd_open(self.proc.pid)
        loop.add_reader(self._pidfd, self._on_exit)

    async def _await_init(self, request_id: str) -> bytes | None:
        waits = {asyncio.ensure_future(e.wait()) for e in (self.api.ready, self.api.init_failed, self.exited)}
        try:
            await asyncio.wait(waits, timeout=INIT_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        if self.api.ready.is_set() and not self.api.init_failed.is_set():
            return None
        if self.api.init_error is not None:
            return self.api.init_error
        if self.exited.is_set():
            return self.exit_error(request_id)
        reason = f"init did not finish within {INIT_TIMEOUT:.0f} seconds"
        return error_body("Runtime.ExitError", f"RequestId: {request_id} Error: Runtime exited with error: {reason}")

    def exit_error(self, request_id: str) -> bytes:
        """Lambda's error body for a runtime that exited: Runtime.OutOfMemory when it was killed for using more
        than memory_size, Runtime.InvalidEntrypoint when the launcher could not execute it (a missing bootstrap
        or interpreter), else Runtime.ExitError; the message names the exit status or signal."""
        if self.proc is not None and self.proc.returncode == 127 and self.last_output:
            failed = _exec_failure(self.last_output[-1])
            if failed is not None:
                return error_body("Runtime.InvalidEntrypoint", f"RequestId: {request_id} Error: {failed}")
        error_type = "Runtime.OutOfMemory" if self.memory.out_of_memory() else "Runtime.ExitError"
        return error_body(error_type, f"RequestId: {request_id} Error: Runtime exited with error: {self.exit_reason}")

    async def run(self, invocation: Invocation, headers: dict[str, str], timeout: float) -> tuple[bytes, str | None]:
        """Hand one invocation to the process and wait for its answer, its crash, or the deadline."""
        pending = Pending(invocation.request_id, invocation.payload, headers)
        self.current = pending
        self.memory.watch()
        try:
            self.api.hand_over(pending)
            async with asyncio.timeout(timeout):
                return await pending.done
        except TimeoutError:
            self.kill()
            return error_body("Sandbox.Timedout", _timeout_message(invocation.request_id, timeout)), "Unhandled"
        finally:
            self.memory.unwatch()
            self.current = None

    def _over_limit(self) -> None:
        """The watch found the worker past memory_size: it is killed, as Lambda's cgroup would have it."""
        self.kill()
        get_logger(function=self.spec.name).warning(
            "worker.out_of_memory", pid=self.proc.pid if self.proc else None,
            request_id=self.current.request_id if self.current else None,
            memory_size_mb=self.spec.config.memory_size, max_memory_mb=self.max_rss_mb())

    def _on_exit(self) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        assert self.proc is not None
        code = self._reap()
        self._drain_output()
        if self._partial:  # a last line without its newline is output too
            self._emit(b"\n")
        self.memory.unwatch()
        self.exit_reason = _describe_exit(code)
        if self._status_fd is not None:
            os.close(self._status_fd)
            self._status_fd = None
        self.exited.set()
        if self.current is not None:
            self.current.settle(self.exit_error(self.current.request_id), "Unhandled")

    def _drain_output(self) -> None:
        """Read everything the process has written so far, without blocking."""
        if self.proc is None or self.proc.stdout is None or self.proc.stdout.closed:
            return
        fd = self.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                asyncio.get_running_loop().remove_reader(fd)
                self.proc.stdout.close()
                return
            self._emit(chunk)

    def _emit(self, chunk: bytes) -> None:
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            text = line.decode(errors="replace")
            self.last_output.append(text)
            self._on_output(self, text)

    def _reap(self) -> int:
        """Wait for the exited process; its rusage keeps the high-water mark a crash took with it."""
        assert self.proc is not None
        try:
            _, status, usage = os.wait4(self.proc.pid, 0)
        except ChildProcessError:  # already reaped elsewhere: fall back to what Popen knows
            return self.proc.wait()
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        if self._peak_mb is None:
            self._peak_mb = usage.ru_maxrss // 1024  # kilobytes on Linux
        return self.proc.returncode

    def max_rss_mb(self) -> int | None:
        """Peak resident memory (VmHWM), as Lambda's 'Max Memory Used'; after the process is gone, the peak
        read just before the kill or taken from its rusage; None when it cannot be known."""
        if self.proc is None or self.exited.is_set() or self._killed:
            return self.memory.peak_mb(self._peak_mb)
        return self.memory.peak_mb(self._read_hwm())

    def _read_hwm(self) -> int | None:
        assert self.proc is not None
        try:
            if self._status_fd is None:
                self._status_fd = os.open(f"/proc/{self.proc.pid}/status", os.O_RDONLY)
            status = os.pread(self._status_fd, 4096, 0)  # procfs regenerates the file on each read at 0
        except OSError:
            return self._peak_mb
        start = status.find(b"VmHWM:")
        return int(status[start + 6 : status.index(b"kB", start)]) // 1024 if start >= 0 else None

    def kill(self) -> None:
        """SIGKILL the process group (the handler may have started children)."""
        if self.proc is not None and not self.exited.is_set():
            if not self._killed:
                self._peak_mb = self._read_hwm()  # procfs forgets it with the process
            self._killed = True  # never handed another invocation, though the exit is noticed only later
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    async def stop(self) -> None:
        """Kill the process, wait for it to be reaped, close the Runtime API."""
        self.kill()
        if self.proc is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self.exited.wait()
        self.memory.release()
        await self.api.stop()


def _timeout_message(request_id: str, timeout: float) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return f"{stamp} {request_id} Task timed out after {timeout:.2f} seconds"


def _exec_failure(line: str) -> str | None:
    """setpriv's "failed to execute PATH: REASON" as Lambda words an exec failure ("fork/exec PATH: reason")."""
    prefix = "setpriv: failed to execute "
    if not line.startswith(prefix) or ": " not in line[len(prefix):]:
        return None
    path, _, reason = line[len(prefix):].rpartition(": ")
    return f"fork/exec {path}: {reason.lower()}"


def _describe_exit(code: int) -> str:
    """Lambda's wording: ``exit status 3`` or ``signal: segmentation fault``."""
    if code >= 0:
        return f"exit status {code}"
    names = {signal.SIGSEGV: "segmentation fault", signal.SIGKILL: "killed", signal.SIGABRT: "aborted"}
    sig = signal.Signals(-code)
    return f"signal: {names.get(sig, sig.name.lower())}"


def monotonic_ms() -> float:
    """Milliseconds on the monotonic clock, for durations."""
    return time.monotonic() * 1000
