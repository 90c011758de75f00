"""Who is on the other end of a loopback TCP connection: its uid and process, from the kernel's socket tables."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass

# /proc/self/net rather than /proc/net: it stays readable under systemd's ProcSubset=pid.
TCP_TABLE = "/proc/self/net/tcp"
ESTABLISHED = "01"


@dataclass(frozen=True)
class PeerSocket:
    """The connecting socket as the kernel lists it: owner uid and inode."""

    uid: int
    inode: int


def _hex_endpoint(host: str, port: int) -> str:
    """``127.0.0.1:8080`` as /proc/net/tcp prints it: the address in host byte order, then the port."""
    address = int.from_bytes(socket.inet_aton(host), sys.byteorder)
    return f"{address:08X}:{port:04X}"


def find_peer(local: tuple[str, int], peer: tuple[str, int], table: str = TCP_TABLE) -> PeerSocket | None:
    """The client's socket of the connection ``peer`` -> ``local`` (its row has them the other way round)."""
    key = f" {_hex_endpoint(*peer)} {_hex_endpoint(*local)} {ESTABLISHED} "
    try:
        with open(table, encoding="ascii") as rows:
            text = rows.read()
    except OSError:
        return None
    start = text.find(key)
    if start < 0:
        return None
    fields = text[start : text.find("\n", start)].split()
    # fields: local rem st tx:rx tr:when retrnsmt uid timeout inode ...
    return PeerSocket(uid=int(fields[6]), inode=int(fields[8]))


def _holds(pid: int, target: str) -> bool:
    """True when process ``pid`` has the socket ``target`` (``socket:[INODE]``) among its open files."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return False
    for name in names:
        try:
            if os.readlink(f"{fd_dir}/{name}") == target:
                return True
        except OSError:
            continue
    return False


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's list; CONFIG_PROC_CHILDREN, on in every distro kernel)."""
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as f:
                found.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return found


def tree_holds(root: int, inode: int, limit: int = 256) -> bool:
    """True when ``root`` or one of its descendants (at most ``limit`` processes) holds socket ``inode``.

    The root is checked first: the worker itself is almost always the one connecting, so the common case
    is one directory listing. A runtime may start the real client as a child (a ``provided`` bootstrap).
    """
    target = f"socket:[{inode}]"
    queue, seen = [root], 0
    while queue and seen < limit:
        pid = queue.pop(0)
        seen += 1
        if _holds(pid, target):
            return True
        queue.extend(_children(pid))
    return False


def admitted(local: tuple[str, int], peer: tuple[str, int], owner: int | None) -> str | None:
    """None when the connection comes from process ``owner``'s tree under our own uid, else why not."""
    if owner is None:
        return "no worker process yet"
    found = find_peer(local, peer)
    if found is None:
        return "connecting socket not found in the kernel's table"
    if found.uid != os.geteuid():
        return f"connection from uid {found.uid}"
    if not tree_holds(owner, found.inode):
        return "connection from a process outside the worker's process tree"
    return None
