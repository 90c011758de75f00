"""Finding the process at the other end of a loopback connection, both ways the kernel offers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bridge.invokers import peer

OUTSIDE = "connection from a process outside the worker's process tree"
# A child of a shell connects and waits: the connecting process is a descendant of the "worker" (the shell).
GRANDCHILD = "import socket, sys, time; s = socket.create_connection(('127.0.0.1', int(sys.argv[1]))); time.sleep(30)"


@pytest.fixture
def server() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listening:
        listening.settimeout(20)
        yield listening


def test_sock_diag_and_the_proc_table_agree(server: socket.socket) -> None:
    local = server.getsockname()
    with socket.create_connection(local):
        conn, remote = server.accept()
        with conn:
            found = peer.diag_peer(local, remote)
            assert found is not None and found.uid == os.geteuid()
            assert peer.table_peer(local, remote) == found
            assert peer.diag_peer(local, ("127.0.0.1", 1)) is None
            assert peer.table_peer(local, ("127.0.0.1", 1)) is None
            assert peer.admitted(local, remote, os.getpid()) is None
            assert peer.admitted(local, remote, None) == "no worker process yet"


def test_a_descendant_is_admitted_a_stranger_is_not(server: socket.socket) -> None:
    local = server.getsockname()
    shell = subprocess.Popen(["sh", "-c", f'"{sys.executable}" -c "{GRANDCHILD}" {local[1]}; true'],
                             start_new_session=True)
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        conn, remote = server.accept()
        with conn:
            assert peer.admitted(local, remote, shell.pid) is None
            assert peer.admitted(local, remote, stranger.pid) == OUTSIDE
    finally:
        os.killpg(shell.pid, signal.SIGKILL)  # the shell and the python it started
        stranger.kill()
        for proc in (shell, stranger):
            proc.wait()
