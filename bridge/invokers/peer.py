"""Who is on the other end of a loopback TCP connection: its uid and process, from the kernel's socket tables."""

from __future__ import annotations

import os
import socket
import struct
import sys
from dataclasses import dataclass

# /proc/self/net rather than /proc/net: it stays readable under systemd's ProcSubset=pid.
TCP_TABLE = "/proc/self/net/tcp"
ESTABLISHED = "01"

# sock_diag (netlink): the kernel looks one socket up by its four-tuple, in microseconds, where reading
# /proc/net/tcp walks every socket of the host (tens of milliseconds on a busy one).
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
INET_DIAG_NOCOOKIE = 0xFFFFFFFF
_REQUEST = struct.Struct("=IHHII BBBBI HH16s16sIII")  # nlmsghdr + inet_diag_req_v2 (ports/addresses big-endian)
_HEADER = struct.Struct("=IHHII")
_UID_INODE = struct.Struct("=II")
_UID_OFFSET = _HEADER.size + 4 + 48 + 12  # inet_diag_msg: family..retrans, id, expires, rqueue, wqueue, uid, inode


@dataclass(frozen=True)
class PeerSocket:
    """The connecting socket as the kernel lists it: owner uid and inode."""

    uid: int
    inode: int


def _hex_endpoint(host: str, port: int) -> str:
    """``127.0.0.1:8080`` as /proc/net/tcp prints it: the address in host byte order, then the port."""
    address = int.from_bytes(socket.inet_aton(host), sys.byteorder)
    return f"{address:08X}:{port:04X}"


def find_peer(local: tuple[str, int], peer: tuple[str, int]) -> PeerSocket | None:
    """The client's socket of the connection ``peer`` -> ``local``: sock_diag, else the /proc table.

    The /proc fallback is for a sandbox that forbids AF_NETLINK (systemd's RestrictAddressFamilies=).
    """
    try:
        return diag_peer(local, peer)
    except OSError:
        return table_peer(local, peer)


def diag_peer(local: tuple[str, int], peer: tuple[str, int]) -> PeerSocket | None:
    """One exact sock_diag lookup of the socket bound to ``peer`` and connected to ``local``."""
    request = _REQUEST.pack(
        _REQUEST.size, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0,
        socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF,
        socket.htons(peer[1]), socket.htons(local[1]), socket.inet_aton(peer[0]).ljust(16, b"\0"),
        socket.inet_aton(local[0]).ljust(16, b"\0"), 0, INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as diag:
        diag.settimeout(1.0)  # the kernel answers during send(); never hang the loop on a surprise
        diag.send(request)
        reply = diag.recv(8192)
    _, kind, _, _, _ = _HEADER.unpack_from(reply)
    if kind == NLMSG_ERROR or len(reply) < _UID_OFFSET + _UID_INODE.size:
        return None  # ENOENT: no such socket (the client is already gone)
    uid, inode = _UID_INODE.unpack_from(reply, _UID_OFFSET)
    return PeerSocket(uid=uid, inode=inode)


def table_peer(local: tuple[str, int], peer: tuple[str, int], table: str = TCP_TABLE) -> PeerSocket | None:
    """The same from /proc/self/net/tcp: the client's row has ``peer`` as local and ``local`` as remote."""
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
