"""The store's group commit: only new events are queued, one failing op fails alone, big batches are split."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from bridge.store import QueuedEvent, Store


def event(i: int | str, function: str = "f") -> QueuedEvent:
    now = time.time()
    return QueuedEvent(f"ev-{i}", function, b"{}", f"rid-{i}", now, now)


async def test_enqueue_returns_only_the_new_events(tmp_path: Path) -> None:
    async with Store(tmp_path / "s.sqlite3") as store:
        assert [e.id for e in await store.enqueue([event(1), event(2)])] == ["ev-1", "ev-2"]
        again = await store.enqueue([event(2), event(3), event(3), event(1), event(4)])
        assert [e.id for e in again] == ["ev-3", "ev-4"], "queued ids and repeats within the batch are left out"
        assert (await store.depth())[0] == 4


async def test_batches_larger_than_one_statement(tmp_path: Path) -> None:
    """1,201 rows: three insert statements, and three delete statements for the same ids."""
    async with Store(tmp_path / "s.sqlite3") as store:
        added = await store.enqueue([event(i) for i in range(1201)])
        assert len(added) == 1201 and (await store.depth())[0] == 1201
        await asyncio.gather(*(store.delete_soon(e.id) for e in added))
        assert (await store.depth())[0] == 0


async def test_one_failing_op_fails_alone_in_its_group_commit(tmp_path: Path) -> None:
    """Ops submitted together share one commit; the one that raises gets its error, the rest commit."""
    async with Store(tmp_path / "s.sqlite3") as store:

        def broken(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO source_state (source, key, value) VALUES ('x', 'half', '1')")
            raise ValueError("this op is broken")

        commits = store.commits
        results = await asyncio.gather(
            store.enqueue([event(1)]), store.call(broken), store.put_state("src", "k", {"v": 1}),
            store.enqueue([event(2)]), return_exceptions=True)
        assert store.commits - commits <= 2, "one group commit (a test on a slow machine may see two)"
        assert isinstance(results[1], ValueError)
        assert [e.id for e in results[0]] == ["ev-1"] and [e.id for e in results[3]] == ["ev-2"]
        assert await store.get_state("src", "k") == {"v": 1}
        assert await store.get_state("x", "half") is None, "the broken op's own write was undone"
        assert (await store.depth())[0] == 2


async def test_an_integrity_error_rolls_back_only_its_op(tmp_path: Path) -> None:
    async with Store(tmp_path / "s.sqlite3") as store:
        await store.call(lambda conn: conn.execute("CREATE TABLE once (k TEXT PRIMARY KEY)"))
        await store.call(lambda conn: conn.execute("INSERT INTO once VALUES ('a')"))
        with pytest.raises(sqlite3.IntegrityError):
            await store.enqueue([event(9)], also=lambda conn: conn.execute("INSERT INTO once VALUES ('a')"))
        assert (await store.depth())[0] == 0, "the events and the record are durable together, or neither"
