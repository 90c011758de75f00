"""The systemd journal as a log origin: ``journalctl -o json --follow --after-cursor=…``, the cursor kept durably."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from typing import Any, Protocol

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from bridge.sources.base import SourceContext
from bridge.sources.logs.batcher import Batcher
from bridge.sources.logs.config import LogsSourceConfig
from bridge.sources.logs.tail import Record

LINE_LIMIT = 16 << 20  # bytes of one JSON entry journalctl may print
READ_AHEAD = 4096  # entries parsed ahead of the batcher
_GROUP_CHARS = re.compile(r"[^\.\-_/#A-Za-z0-9]")


Entry = tuple[Record, str, int]  # the record, its cursor, its time (epoch ms)


class LogsSource(Protocol):
    """What the journal reader needs of its source (bridge.sources.logs.source.LogsSource)."""

    name: str
    config: LogsSourceConfig
    ctx: SourceContext
    log: Any

    def warn(self, event: str, once: str | None, **fields: Any) -> None:
        """Log ``event`` (once per ``once`` key, when given)."""


class JournalEnded(Exception):
    """journalctl exited (no journal, a bad match, a permission problem); restarted with backoff."""


def journal_command(source: LogsSource, cursor: str | None) -> list[str]:
    """The journalctl command line: after the saved cursor, else from the first matching entry."""
    assert source.config.journal is not None
    args = ["journalctl", "--output=json", "--follow", "--no-pager", "--all"]
    if cursor:
        args += [f"--after-cursor={cursor}", "--no-tail"]
    else:  # "" (nothing matched at the first start) or start_position: beginning
        args += ["--no-tail"]
    return args + source.config.journal.arguments()


def entry_record(entry: dict[str, Any]) -> Entry:
    """(record, the entry's unit or identifier, its time in ms) of one journal JSON entry."""
    message = entry.get("MESSAGE")
    if isinstance(message, list):  # binary: journalctl prints the bytes as numbers
        text = bytes(b for b in message if isinstance(b, int) and 0 <= b < 256).decode("utf-8", "replace")
    else:
        text = "" if message is None else str(message)
    cursor = str(entry.get("__CURSOR", ""))
    fields = dict(part.split("=", 1) for part in cursor.split(";") if "=" in part)
    position = int(fields.get("i", "0"), 16) if re.fullmatch(r"[0-9a-f]+", fields.get("i", "")) else 0
    stream = str(entry.get("_SYSTEMD_UNIT") or entry.get("SYSLOG_IDENTIFIER") or socket.gethostname())
    try:
        wall_ms = int(entry["__REALTIME_TIMESTAMP"]) // 1000
    except (KeyError, ValueError, TypeError):
        wall_ms = time.time_ns() // 1_000_000
    return Record(f"journal:{fields.get('s', '')}", position, text, stream), cursor, wall_ms


async def follow_journal(source: LogsSource) -> None:
    """Follow the journal until cancelled; journalctl is restarted (capped backoff) when it exits."""
    batcher = Batcher(source.config, source.ctx, "cursor")
    retrying = AsyncRetrying(retry=retry_if_exception_type(JournalEnded), reraise=True,
                             wait=wait_random_exponential(multiplier=0.5, max=30),
                             before_sleep=_before_sleep(source))
    async for attempt in retrying:
        with attempt:
            await _run_journalctl(source, batcher)


def _before_sleep(source: LogsSource) -> Any:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        source.ctx.stats.state = "retrying"
        source.ctx.stats.last_error = str(error)
        source.log.warning("logs.journal_ended", error=str(error), attempt=state.attempt_number,
                           hint="check that journald runs and that the daemon's user may read the journal "
                                "(the systemd-journal group)")
    return before_sleep


async def initial_cursor(source: LogsSource) -> str | None:
    """The first start's position: the cursor of the last entry that matches now (None: none does yet)."""
    assert source.config.journal is not None
    process = await asyncio.create_subprocess_exec(
        "journalctl", "--lines=0", "--show-cursor", "--no-pager", "--quiet", *source.config.journal.arguments(),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    found = re.search(r"^-- cursor: (\S+)", out.decode(errors="replace"), re.MULTILINE)
    if found:
        return found.group(1)
    if process.returncode not in (0, 1) or err.strip():  # 1 and silent: no entry matches yet
        raise JournalEnded(f"journalctl exited with {process.returncode}: {err.decode(errors='replace')[:500]}")
    return None


async def _run_journalctl(source: LogsSource, batcher: Batcher) -> None:
    cursor = await source.ctx.store.get_state(source.name, "cursor")
    if cursor is not None and not isinstance(cursor, str):  # not ours (a hand-edited store): start afresh
        source.warn("logs.state_ignored", None, state=str(cursor)[:200])
        cursor = None
    if cursor is None and source.config.start_position == "end":
        try:
            cursor = await initial_cursor(source) or ""
        except OSError as err:
            raise JournalEnded(f"cannot run journalctl: {err.strerror}") from None
        await source.ctx.store.put_state(source.name, "cursor", cursor)  # "": from the first matching entry
    command = journal_command(source, cursor)
    try:
        process = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.DEVNULL,
                                                       stdout=asyncio.subprocess.PIPE,
                                                       stderr=asyncio.subprocess.PIPE, limit=LINE_LIMIT)
    except OSError as err:
        raise JournalEnded(f"cannot run journalctl: {err.strerror}") from None
    queue: asyncio.Queue[Entry | None] = asyncio.Queue(READ_AHEAD)
    reader = asyncio.create_task(_read(source, process, queue))
    source.ctx.ready()
    source.log.info("logs.journal_following", command=" ".join(command[1:]))
    try:
        await _consume(source, batcher, queue, cursor)
    finally:
        reader.cancel()
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await process.wait()
    error = (await process.stderr.read()).decode(errors="replace").strip() if process.stderr else ""
    raise JournalEnded(f"journalctl exited with {process.returncode}: {error[:500]}")


async def _read(source: LogsSource, process: asyncio.subprocess.Process,
                queue: asyncio.Queue[Entry | None]) -> None:
    """journalctl's JSON lines -> entries; None at the end (or after an error of the reader's own)."""
    try:
        await _parse_lines(source, process, queue)
    except Exception as err:  # never a silent hang: the consumer sees the end, journalctl is restarted
        source.log.warning("logs.journal_read_failed", error=f"{type(err).__name__}: {err}"[:500])
    await queue.put(None)


async def _parse_lines(source: LogsSource, process: asyncio.subprocess.Process,
                       queue: asyncio.Queue[Entry | None]) -> None:
    assert process.stdout is not None
    while True:
        try:
            line = await process.stdout.readline()
        except ValueError:  # one entry beyond LINE_LIMIT: skipped, logged
            source.warn("logs.journal_entry_too_large", None, limit=LINE_LIMIT)
            continue
        if not line:
            return
        try:
            entry = json.loads(line)
        except ValueError:
            source.warn("logs.journal_bad_line", None, line=line[:200].decode(errors="replace"))
            continue
        if isinstance(entry, dict):
            await queue.put(entry_record(entry))


async def _consume(source: LogsSource, batcher: Batcher, queue: asyncio.Queue[Entry | None],
                   cursor: str | None) -> None:
    config = source.config
    assert config.journal is not None
    unit = config.journal.unit or config.journal.identifier
    group = config.log_group or _GROUP_CHARS.sub("_", f"/journal/{unit or 'all'}")[:512]

    def stream_of(record: Record) -> tuple[str, str]:
        return group, config.log_stream or unit or record.path

    while True:
        entries, ended = await _take(queue, batcher.deadline(), config.batch_size)
        for record, entry_cursor, wall_ms in entries:
            batcher.offer([record], stream_of, time.monotonic(), wall_ms=wall_ms)
            cursor = entry_cursor or cursor
        if ended:
            if batcher.first_line is not None:
                await batcher.commit(cursor)
            return
        if batcher.due(time.monotonic()):
            await batcher.commit(cursor)


async def _take(queue: asyncio.Queue[Entry | None], deadline: float | None,
                limit: int) -> tuple[list[Entry], bool]:
    """The entries waiting (at least one, unless the deadline passes first); True when journalctl ended."""
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        first = await asyncio.wait_for(queue.get(), timeout)
    except TimeoutError:
        return [], False
    entries: list[Entry] = []
    item = first
    while item is not None:
        entries.append(item)
        if queue.empty() or len(entries) >= limit:
            return entries, False
        item = queue.get_nowait()
    return entries, True
