"""Local functions: a pool of warm workers per function, bounded by reserved_concurrency."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass

from bridge.build.readiness import Readiness
from bridge.errors import BuildFailed, Throttled
from bridge.function_logs import RECORD_BREAK, FunctionLog, as_text
from bridge.invokers.inflight import InFlight
from bridge.invokers.memory import MemoryLimits
from bridge.invokers.worker import FunctionSpec, Worker, monotonic_ms
from bridge.log import get_logger
from bridge.model import Invocation, InvokeResult, error_body

TAIL_BYTES = 4096
RUNTIME_EXITS = ("Runtime.ExitError", "Runtime.OutOfMemory", "Runtime.InvalidEntrypoint")


class LocalFunction:
    """Invokes one function on warm workers: cold start on demand, reaped after ``idle_timeout``.

    ``memory``: the daemon's way of enforcing memory_size (bridge.invokers.memory; the watch when None).
    """

    staged = 1  # the async queue may hold one event ready beyond the limit (see handover)

    def __init__(self, spec: FunctionSpec, logfile: FunctionLog | None = None,
                 memory: MemoryLimits | None = None, readiness: Readiness | None = None) -> None:
        self.spec = spec
        self.readiness = readiness  # None: workers run the daemon's interpreter with its whole venv
        self.logfile = logfile
        self.memory = memory
        self.limit = spec.config.reserved_concurrency
        self.invocations = 0
        self.errors = 0
        self._slots = asyncio.Semaphore(self.limit)
        self._idle: list[Worker] = []
        self._workers: set[Worker] = set()
        self._reapers: dict[Worker, asyncio.TimerHandle] = {}
        self._transcripts: dict[str, list[str]] = {}
        self._calls = InFlight()
        self._handovers = 0  # the async queue's deliveries in progress, one waiting for a slot included
        self.log = get_logger(function=spec.name)

    @property
    def workers(self) -> int:
        """Worker processes alive now (idle or busy)."""
        return len(self._workers)

    @property
    def in_flight(self) -> int:
        """Invocations running now."""
        return self._calls.count

    def has_capacity(self) -> bool:
        """True when an invocation would start now instead of being throttled."""
        return self.limit > 0 and not self._slots.locked()

    async def invoke(self, invocation: Invocation, *, wait: bool = False) -> InvokeResult:
        """Run one invocation; raises Throttled when all workers are busy and ``wait`` is False."""
        if self.limit == 0 or (self._slots.locked() and not wait):
            raise Throttled(self.spec.name, self.limit)
        with self._calls.call():
            failure = await self._ready()  # waits while the environment builds, before taking a slot
            if failure is not None:
                return self._not_ready(invocation, failure)
            if self._slots.locked() and not wait:  # the slots may have filled while it waited
                raise Throttled(self.spec.name, self.limit)
            async with self._slots:
                return await self._invoke(invocation)

    async def _ready(self) -> str | None:
        """Wait for the function's environment; the reason it cannot run, or None when it can."""
        if self.readiness is None:
            return None
        try:
            setup = await self.readiness.setup()
        except BuildFailed as err:
            return err.reason
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
            return "the function was stopped while its environment was being built"
        if self.spec.setup is not setup:
            self.spec = dataclasses.replace(self.spec, setup=setup)
        return None

    def _not_ready(self, invocation: Invocation, reason: str) -> InvokeResult:
        """Lambda's answer when the function cannot be loaded: Runtime.ImportModuleError, with the build's reason."""
        rid = invocation.request_id
        if invocation.log_tail:
            self._transcripts[rid] = []
        message = f"Unable to import module {self.spec.config.handler!r}: the environment could not be built: {reason}"
        payload = error_body("Runtime.ImportModuleError", message)
        self._line(rid, f"START RequestId: {rid} Version: $LATEST", None)
        self._line(rid, f"[ERROR] Runtime.ImportModuleError: {message}", None)
        self._report(None, rid, 0.0, 0.0, _failure(payload, "Unhandled"))
        self.invocations += 1
        self.errors += 1
        tail = self._tail(rid) if invocation.log_tail else None
        return InvokeResult(rid, payload, "Unhandled", tail, 0.0)

    async def handover(self, invocation: Invocation, *, staged: bool = False) -> InvokeResult:
        """Deliver one event of the async queue: a local function runs it, throttled as Lambda throttles.

        ``staged``: the single-box queue's deliveries do not throttle one another. While such deliveries
        hold every slot, the next one (its lane keeps ``staged`` events ready beyond the concurrency) waits
        for the first slot they free: a worker gets its next event as soon as it is free, and the
        bookkeeping of the last one happens while it runs. A slot held by any other caller (a synchronous
        invoke) throttles it, as before; so it does for every delivery of the cluster's queue, whose
        message would otherwise wait unacknowledged.
        """
        wait = staged and self._handovers >= self.limit
        self._handovers += 1
        try:
            return await self.invoke(invocation, wait=wait)
        finally:
            self._handovers -= 1

    async def _invoke(self, invocation: Invocation) -> InvokeResult:
        rid = invocation.request_id
        if invocation.log_tail:
            self._transcripts[rid] = []
        started = monotonic_ms()
        worker, init_error, init_ms = await self._take_worker(rid)
        self._line(rid, f"START RequestId: {rid} Version: $LATEST", None)
        if init_error is not None:
            payload, function_error = init_error, "Unhandled"
        else:
            payload, function_error = await worker.run(invocation, self._headers(invocation), self._timeout)
        duration = monotonic_ms() - started - init_ms
        self._report(worker, rid, duration, init_ms, _failure(payload, function_error))
        self._give_back(worker)
        self.invocations += 1
        self.errors += function_error is not None
        tail = self._tail(rid) if invocation.log_tail else None
        return InvokeResult(rid, payload, function_error, tail, duration)

    @property
    def _timeout(self) -> float:
        return float(self.spec.config.timeout)

    def _headers(self, invocation: Invocation) -> dict[str, str]:
        deadline = int(time.time() * 1000 + self._timeout * 1000)
        trace = f"Root=1-{int(time.time()):08x}-{os.urandom(12).hex()};Parent={os.urandom(8).hex()};Sampled=0"
        headers = {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(deadline),
            "Lambda-Runtime-Invoked-Function-Arn": self.spec.arn,
            "Lambda-Runtime-Trace-Id": trace,
        }
        if invocation.client_context:
            headers["Lambda-Runtime-Client-Context"] = base64.b64decode(invocation.client_context).decode()
        return headers

    async def _take_worker(self, rid: str) -> tuple[Worker, bytes | None, float]:
        """An idle warm worker, or a cold-started one for invocation ``rid``: (worker, init error or None, ms)."""
        while self._idle:
            worker = self._idle.pop()
            self._reapers.pop(worker).cancel()
            if worker.alive:
                return worker, None, 0.0
            self._forget(worker)
        worker = Worker(self.spec, self._on_output, self.memory)
        self._workers.add(worker)
        started = monotonic_ms()
        init_error = await worker.start(rid)
        init_ms = monotonic_ms() - started
        pid = worker.proc.pid if worker.proc else None
        self.log.info("worker.started", pid=pid, init_ms=round(init_ms, 2), ok=init_error is None)
        if init_error is not None and worker.exited.is_set() and worker.api.init_error is None:
            # It died before asking for work or reporting an init error: its last words and its exit say why.
            self.log.warning("worker.init_exited", pid=pid, reason=worker.exit_reason,
                             last_output=list(worker.last_output))
        return worker, init_error, init_ms

    def _give_back(self, worker: Worker) -> None:
        if not worker.alive:
            self._forget(worker)
            return
        self._idle.append(worker)
        loop = asyncio.get_running_loop()
        self._reapers[worker] = loop.call_later(self.spec.config.idle_timeout, self._reap, worker)

    def _reap(self, worker: Worker) -> None:
        """An idle worker past idle_timeout is stopped, as Lambda recycles idle environments."""
        if worker in self._idle:
            self._idle.remove(worker)
            self._reapers.pop(worker, None)
            self.log.info("worker.reaped", pid=worker.proc.pid if worker.proc else None)
            self._forget(worker)

    def _forget(self, worker: Worker) -> None:
        self._workers.discard(worker)
        task = asyncio.get_running_loop().create_task(worker.stop())
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    def _on_output(self, worker: Worker, line: str) -> None:
        """One record the function wrote: raw (``\\r``-joined) in its file, as multi-line text elsewhere."""
        rid = worker.current.request_id if worker.current else None
        text = as_text(line)
        self.log.debug("function.output", request_id=rid, line=text)  # the function's log file has every line
        if self.logfile is not None:
            self.logfile.write(rid, line)
        if rid in self._transcripts:
            self._transcripts[rid].append(text)

    def _line(self, rid: str, text: str, event: str | None, level: str = "debug", **extra: object) -> None:
        """A START/END/REPORT line: into the function's log file, the transcript, and (``event``) the daemon log.

        Every line is in state_dir/logs/FUNCTION.log. In the daemon's log only REPORT appears, at debug: a
        daemon running flat out must stay under journald's rate limit (the delivery summary counts events),
        and START/END would only repeat the request id that REPORT carries.
        """
        if event is not None:
            getattr(self.log, level)(event, request_id=rid, line=text, **extra)
        if self.logfile is not None:
            self.logfile.write(rid, text)
        if rid in self._transcripts:
            self._transcripts[rid].append(as_text(text))

    def _report(self, worker: Worker | None, rid: str, duration: float, init_ms: float,
                failure: Failure | None) -> None:
        """END and REPORT, as Lambda writes them; a timeout first gets its "Task timed out" line.

        REPORT carries ``Status: timeout``, or ``Status: error`` with the ``Error Type`` of a runtime failure
        (exit, out of memory, init), as Lambda's does; an exception the handler raised leaves REPORT as it is.
        The daemon's event is a warning for any failed invocation, the handler's own exceptions included.
        """
        if failure is not None and failure.status == "timeout":
            self._line(rid, failure.message, "invoke.timeout", "warning", error_type=failure.error_type)
        if failure is not None and failure.error_type in RUNTIME_EXITS:  # Lambda's record of a runtime that died
            self._line(rid, f"{failure.message}{RECORD_BREAK}{failure.error_type}", None)
        self._line(rid, f"END RequestId: {rid}", None)
        used = worker.max_rss_mb() if worker is not None else None
        text = (f"REPORT RequestId: {rid}\tDuration: {duration:.2f} ms\tBilled Duration: {math.ceil(duration)} ms"
                f"\tMemory Size: {self.spec.config.memory_size} MB"
                f"\tMax Memory Used: {'unknown' if used is None else f'{used} MB'}")
        if init_ms:
            text += f"\tInit Duration: {init_ms:.2f} ms"
        if failure is not None and failure.status:
            text += f"\tStatus: {failure.status}"
            text += f"\tError Type: {failure.error_type}" if failure.status == "error" else ""
        extra = {} if failure is None else failure.fields()
        self._line(rid, text, "invoke.report", "debug" if failure is None else "warning",
                   duration_ms=round(duration, 3), max_memory_mb=used, **extra)

    def _tail(self, rid: str) -> str:
        """The last 4 KB of the invocation's log, each record as its multi-line text (``LogType: Tail``)."""
        text = "\n".join(self._transcripts.pop(rid, [])) + "\n"
        return text.encode()[-TAIL_BYTES:].decode(errors="ignore")

    async def close(self, drain_timeout: float = 0.0) -> None:
        """Let in-flight invocations finish (up to ``drain_timeout``), then stop every worker."""
        await self._calls.drained(drain_timeout)
        if self.readiness is not None:  # a build still running is given up (the next start begins it again)
            self.readiness.cancel()
        for handle in self._reapers.values():
            handle.cancel()
        self._reapers.clear()
        self._idle.clear()
        workers, self._workers = list(self._workers), set()
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
        if self.logfile is not None:
            self.logfile.close()


@dataclass(frozen=True)
class Failure:
    """What failed in an invocation, read from its error body: type, message, trace, and REPORT's status."""

    error_type: str
    message: str
    trace: str = ""

    @property
    def status(self) -> str:
        """REPORT's ``Status``: Lambda writes timeout or error for failures of the environment (runtime exit,
        out of memory, init), nothing for an exception the handler raised."""
        if self.error_type == "Sandbox.Timedout":
            return "timeout"
        return "error" if self.error_type.startswith("Runtime.") else ""

    def fields(self) -> dict[str, str]:
        """Keys for the daemon's log event: the whole error, traceback included."""
        fields = {"status": self.status or "error", "error_type": self.error_type, "error": self.message}
        return {**fields, "trace": self.trace} if self.trace else fields


def _failure(payload: bytes, function_error: str | None) -> Failure | None:
    """The failure of an invocation that returned ``function_error``, or None when it succeeded."""
    if function_error is None:
        return None
    try:
        body = json.loads(payload)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return Failure("Unhandled", payload[:200].decode(errors="replace"))
    trace = body.get("stackTrace")
    text = "".join(str(t) if str(t).endswith("\n") else f"{t}\n" for t in trace) if isinstance(trace, list) else ""
    return Failure(str(body.get("errorType") or "Unhandled"), str(body.get("errorMessage") or ""), text.rstrip("\n"))
