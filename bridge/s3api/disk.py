"""Objects as files in a bucket's folder: opened without following a symlink out of it, written to a temporary
file and renamed into place (never seen half-written), every call blocking (run on a thread)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable

from bridge.s3api.errors import S3Error, invalid_argument, no_such_key
from bridge.s3api.keys import Bucket, shown
from bridge.sources.directory.tree import Version

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO never blocks open()
WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
MISSING = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EISDIR, errno.ENXIO)


def s3_error(err: OSError, key: bytes, *, writing: bool = False) -> S3Error:
    """The S3 error for a failed file operation on ``key`` (unknown ones are raised again by the caller)."""
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return S3Error(403, "AccessDenied", "Access Denied")
    if err.errno == errno.ENAMETOOLONG:
        return S3Error(400, "KeyTooLongError", "Your key is too long.")
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return S3Error(507, "InsufficientStorage", "The bucket's folder has no room left.")
    if writing and err.errno in (*MISSING, errno.EEXIST, errno.ENOTEMPTY):
        return invalid_argument(f"The key {shown(key)!r} collides with a folder or file of the same name in the "
                                "bucket's folder (a folder cannot hold both 'a' and 'a/b').")
    if err.errno in MISSING:
        return no_such_key(shown(key))
    return S3Error(503, "ServiceUnavailable", f"The bucket's folder could not be used: {err.strerror}")


def open_dir(bucket: Bucket, parts: list[bytes], *, create: bool = False) -> int:
    """A descriptor of the folder ``parts`` inside the bucket, each step refusing symlinks (mkdir with ``create``)."""
    fd = os.open(bucket.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    for part in parts:
        try:
            try:
                new = os.open(part, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=fd)
                new = os.open(part, DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = new
    return fd


def open_object(bucket: Bucket, parts: list[bytes]) -> tuple[int, os.stat_result]:
    """An open regular file and its stat; OSError(ENOENT) for anything else (a folder, a FIFO, a link out)."""
    dfd = open_dir(bucket, parts[:-1])
    try:
        try:
            fd = os.open(parts[-1], READ_FLAGS, dir_fd=dfd)
        except OSError as err:
            if err.errno != errno.ELOOP or not bucket.follow_symlinks:
                raise
            fd = _open_link(bucket, dfd, parts[-1])
    finally:
        os.close(dfd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileNotFoundError(errno.ENOENT, "not a regular file")
    return fd, st


def _open_link(bucket: Bucket, dfd: int, name: bytes) -> int:
    """``follow_symlinks``: a link to a file inside the folder is read through (as the directory source does)."""
    target = os.path.realpath(os.readlink(f"/proc/self/fd/{dfd}").encode() + b"/" + name)
    if not target.startswith(os.path.realpath(bucket.root) + b"/"):
        raise FileNotFoundError(errno.ENOENT, "link leaves the folder")
    return os.open(target, READ_FLAGS)


class Writer:
    """A new object being written: a temporary file in its final folder, renamed over the key at the end."""

    def __init__(self, bucket: Bucket, parts: list[bytes]) -> None:
        self.name = parts[-1]
        self.dfd = open_dir(bucket, parts[:-1], create=True)
        self.temp = b".lambda-bridge." + os.urandom(8).hex().encode() + b".tmp"
        try:
            self.fd = os.open(self.temp, WRITE_FLAGS, 0o666, dir_fd=self.dfd)
        except OSError:
            os.close(self.dfd)
            raise
        self.path = os.readlink(f"/proc/self/fd/{self.dfd}").encode() + b"/" + self.name

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data`` (all of it)."""
        write_all(self.fd, [data])

    def write_all(self, chunks: list[bytes]) -> None:
        """Append every chunk, in order."""
        write_all(self.fd, chunks)

    def publish(self, before_rename: Callable[[Version], None]) -> Version:
        """Tell ``before_rename`` the file's version, make the data durable, rename it over the key."""
        version = self.seal(before_rename)
        self.commit()
        return version

    def seal(self, before_rename: Callable[[Version], None]) -> Version:
        """After the last write: the file's version, told to ``before_rename`` (no waiting on the disk)."""
        st = os.fstat(self.fd)
        version = Version(st.st_size, st.st_mtime_ns, st.st_ino)
        before_rename(version)
        return version

    def commit(self) -> None:
        """The data on disk, then the file under its key, then that name on disk: a 200 means the object
        survives a crash (a rename alone is only journaled seconds later)."""
        os.fdatasync(self.fd)
        os.rename(self.temp, self.name, src_dir_fd=self.dfd, dst_dir_fd=self.dfd)
        os.fsync(self.dfd)
        self._close()

    def abort(self) -> None:
        """Remove the temporary file (the key keeps its old content)."""
        with contextlib.suppress(OSError):
            os.unlink(self.temp, dir_fd=self.dfd)
        self._close()

    def _close(self) -> None:
        for fd in (self.fd, self.dfd):
            with contextlib.suppress(OSError):
                os.close(fd)


def delete(bucket: Bucket, parts: list[bytes], *, folder: bool = False) -> bool:
    """Remove the object (or an empty folder for a ``dir/`` key); False when there was none (S3 says 204 anyway)."""
    try:
        dfd = open_dir(bucket, parts[:-1])
    except OSError as err:
        if err.errno in MISSING:
            return False
        raise
    try:
        st = os.lstat(parts[-1], dir_fd=dfd)
        if folder and stat.S_ISDIR(st.st_mode):
            os.rmdir(parts[-1], dir_fd=dfd)  # only when empty: the keys below it stay
            return True
        if stat.S_ISREG(st.st_mode) or (stat.S_ISLNK(st.st_mode) and bucket.follow_symlinks):
            os.unlink(parts[-1], dir_fd=dfd)
            return True
        return False
    except OSError as err:
        if err.errno in (*MISSING, errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise
    finally:
        os.close(dfd)


def make_folder(bucket: Bucket, parts: list[bytes]) -> None:
    """A ``dir/`` key: the folder (and its parents)."""
    os.close(open_dir(bucket, parts, create=True))


def write_all(fd: int, chunks: list[bytes] | list[bytes | memoryview]) -> None:
    """Append every chunk to ``fd``: one writev for them all, unless the kernel takes less at a time."""
    pending: list[bytes | memoryview] = [c for c in chunks if c]
    while pending:
        done = os.writev(fd, pending)
        while pending and done >= len(pending[0]):
            done -= len(pending[0])
            pending.pop(0)
        if done:
            pending[0] = memoryview(pending[0])[done:]
