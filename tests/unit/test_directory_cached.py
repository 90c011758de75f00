"""Reading small files on the event loop: only where no disk can be waited for, and exactly as the thread would."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from bridge.sources.directory import cached
from bridge.sources.directory.cached import MEMORY, NOT_CACHED, NOWAIT, OFF, inline_mode, read_cached, read_inline
from bridge.sources.directory.tree import TreeRules, read_object

MOUNTINFO = b"""\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:26 / /dev/shm rw,nosuid,nodev shared:3 - tmpfs tmpfs rw
31 22 0:40 / /srv/nfs rw,relatime shared:9 - nfs4 server:/export rw
32 31 0:41 / /srv/nfs/local\\040disk rw,relatime shared:10 - xfs /dev/vdb rw
"""


@pytest.mark.parametrize(("root", "mode"), [
    (b"/var/spool/inbox", NOWAIT),  # ext4 at /
    (b"/dev/shm/bucket", MEMORY),
    (b"/srv/nfs/share", OFF),  # a network filesystem: always the thread
    (b"/srv/nfs/local disk/in", NOWAIT),  # the longest mount point wins; \040 is a space
    (b"/srv/nfsother", NOWAIT),  # not under /srv/nfs: a prefix of the name is not a parent directory
])
def test_inline_mode_follows_the_filesystem_of_the_root(tmp_path: Path, root: bytes, mode: str) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_bytes(MOUNTINFO)
    assert cached.filesystem_type(root, mountinfo) in ("ext4", "tmpfs", "nfs4", "xfs")
    assert inline_mode(root, mountinfo) == mode


def test_unreadable_mountinfo_means_the_thread(tmp_path: Path) -> None:
    assert inline_mode(b"/dev/shm", tmp_path / "missing") == OFF


@pytest.fixture(params=["disk", "memory"])
def tree(request: pytest.FixtureRequest, tmp_path: Path):
    """A directory on this machine's disk (tmp_path) or on tmpfs (/dev/shm), and its inline mode."""
    if request.param == "disk":
        yield tmp_path, inline_mode(os.fsencode(tmp_path))
        return
    with tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
        assert inline_mode(os.fsencode(shm)) == MEMORY
        yield Path(shm), MEMORY


def test_read_cached_gives_what_the_thread_gives(tree) -> None:
    root, mode = tree
    (root / "a.txt").write_bytes(b"hello")
    (root / "empty").write_bytes(b"")
    with open(os.fsencode(root) + b"/latin1-\xe9\xff.bin", "wb") as f:  # a name that is not UTF-8
        f.write(b"bytes")
    (root / "big").write_bytes(b"x" * (cached.INLINE_MAX + 1))
    os.mkfifo(root / "fifo")
    os.symlink(root / "a.txt", root / "link.txt")
    rules = TreeRules(os.fsencode(root))
    if mode == OFF:
        pytest.fail(f"{root} is on a filesystem read on the thread only; this test needs ext4/xfs/btrfs or tmpfs")
    for name in (b"a.txt", b"empty", b"latin1-\xe9\xff.bin"):
        assert read_cached(rules, name, mode) == read_object(rules, name)
    assert read_cached(rules, b"big", mode) is NOT_CACHED, "over INLINE_MAX: hashed on the thread"
    assert read_cached(rules, b"fifo", mode) is None, "never opened (it would block)"
    assert read_cached(rules, b"link.txt", mode) is None, "a symlink is not followed"
    assert read_cached(rules, b"vanished", mode) is None


def test_a_file_not_in_the_page_cache_goes_to_the_thread(tmp_path: Path) -> None:
    """RWF_NOWAIT: a read that would wait for the disk fails at once, and the thread reads the file."""
    if inline_mode(os.fsencode(tmp_path)) != NOWAIT:
        pytest.fail(f"{tmp_path} is not on ext4/xfs/btrfs; this test needs a disk filesystem with RWF_NOWAIT")
    path = tmp_path / "cold.txt"
    path.write_bytes(b"cold" * 1000)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # clean pages can be dropped from the cache
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    rules = TreeRules(os.fsencode(tmp_path))
    assert read_cached(rules, b"cold.txt", NOWAIT) is NOT_CACHED
    assert read_object(rules, b"cold.txt") is not None
    assert read_cached(rules, b"cold.txt", NOWAIT) == read_object(rules, b"cold.txt"), "cached again after a read"


def test_a_batch_reads_at_most_its_budget_on_the_loop(tmp_path: Path) -> None:
    size = cached.INLINE_MAX
    names = [f"f{i}".encode() for i in range(cached.INLINE_BUDGET // size + 3)]
    for name in names:
        (tmp_path / os.fsdecode(name)).write_bytes(b"y" * size)
    rules = TreeRules(os.fsencode(tmp_path))
    infos = read_inline(rules, names, MEMORY)
    inline = [i for i in infos if i is not NOT_CACHED]
    assert len(inline) == cached.INLINE_BUDGET // size and all(i is NOT_CACHED for i in infos[len(inline):])
    following = TreeRules(os.fsencode(tmp_path), follow_symlinks=True)
    assert read_inline(following, names, MEMORY) == [NOT_CACHED] * len(names), "links need the thread's checks"
    assert read_inline(rules, names, OFF) == [NOT_CACHED] * len(names)


def test_files_under_another_mount_inside_the_tree_go_to_the_thread(tmp_path: Path) -> None:
    """An NFS or FUSE mount inside the watched tree could make even lstat wait: never touched on the loop."""
    root = os.fsencode(os.path.realpath(tmp_path))
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "a.txt").write_bytes(b"a")
    (tmp_path / "share").mkdir()
    (tmp_path / "share" / "b.txt").write_bytes(b"b")
    (tmp_path / "shared.txt").write_bytes(b"c")  # a name that merely starts like the mount point
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_bytes(b"22 1 254:1 / / rw - ext4 /dev/vda rw\n"
                          b"40 22 0:50 / " + root + b"/share rw - nfs4 server:/x rw\n")
    rules = TreeRules(root)
    infos = read_inline(rules, [b"local/a.txt", b"share/b.txt", b"shared.txt"], MEMORY, root, mountinfo)
    assert infos[1] is NOT_CACHED
    assert infos[0] == read_object(rules, b"local/a.txt") and infos[2] == read_object(rules, b"shared.txt")
    empty = tmp_path / "empty-mountinfo"
    empty.write_bytes(b"")
    assert read_inline(rules, [b"local/a.txt"], MEMORY, root, empty) == [NOT_CACHED], "no mount table: the thread"
