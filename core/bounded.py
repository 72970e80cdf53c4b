"""Bounded reads of files that come from outside: specs, run records, data, archives.

One rule for every reader: only a regular file is read (a FIFO would block, `/dev/zero`
never ends), a symbolic link is not followed unless the caller says the path is the
user's own, and no more than a stated number of bytes is read or inflated. A refusal
is a `ReadRefused` (an OSError, so readers that already turn OSError into their own
one-line error do so for these too), whose message names the path and the reason.
"""
from __future__ import annotations

import errno
import fcntl
import io
import os
import stat
import zlib
from pathlib import Path
from typing import BinaryIO

KiB, MiB = 1 << 10, 1 << 20


class ReadRefused(OSError):
    """A file that is not read: not a regular file, a link, or larger than allowed."""

    def __str__(self) -> str:  # OSError's own str() shows "[Errno None] ..."
        return self.args[0] if self.args else "refused"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | Path, *, follow_symlinks: bool = False, buffered: bool = True) -> BinaryIO:
    """Open `path` for binary reading if it is a regular file; ReadRefused otherwise.

    O_NONBLOCK makes opening a FIFO return at once instead of waiting for a writer
    (it is then refused by its type); O_NOFOLLOW refuses a link as the last component.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP and not follow_symlinks:
            raise ReadRefused(f"{path}: a symbolic link; not followed") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ReadRefused(f"{path}: {_kind(st.st_mode)}, not a regular file; not read")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        raw = io.FileIO(fd, "rb", closefd=True)
        raw.name = str(path)  # messages name the path, not the descriptor
        return io.BufferedReader(raw) if buffered else raw
    except BaseException:
        os.close(fd)
        raise


def check_size(path: str | Path, size: int, limit: int) -> None:
    if size > limit:
        raise ReadRefused(f"{path}: {size:,} bytes, more than the {limit:,} such a file may have; not read")


def read_bounded(path: str | Path, limit: int, *, follow_symlinks: bool = False) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (checked before and while reading)."""
    with open_regular(path, follow_symlinks=follow_symlinks) as f:
        check_size(path, os.fstat(f.fileno()).st_size, limit)
        data = f.read(limit + 1)  # the file may grow between the stat and the read
    check_size(path, len(data), limit)
    return data


def read_text_bounded(path: str | Path, limit: int, *, follow_symlinks: bool = False) -> str:
    """As `read_bounded`, decoded as UTF-8 (UnicodeDecodeError if it is not)."""
    return read_bounded(path, limit, follow_symlinks=follow_symlinks).decode("utf-8")


def gunzip_bounded(raw: bytes, limit: int, where: str) -> bytes:
    """Inflate gzip data (all members) to at most `limit` bytes; ReadRefused for a bomb, ValueError if corrupt."""
    out = bytearray()
    data = raw
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # 16+: a gzip header and trailer
        try:
            out += inflater.decompress(data, limit + 1 - len(out))
        except zlib.error as e:
            raise ValueError(f"corrupt gzip data ({e})") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise ReadRefused(f"{where}: inflates to more than {limit:,} bytes; not read (a gzip bomb?)")
        if not inflater.eof:
            raise ValueError("truncated gzip data")
        data = inflater.unused_data.lstrip(b"\0")  # gzip allows several members, and padding between them
    return bytes(out)


def zip_member_bounded(z, name: str, limit: int, where: str) -> bytes:
    """One member of an open `zipfile.ZipFile`, at most `limit` bytes once inflated.

    The size the archive declares is checked first; zipfile then stops at that size
    and checks the CRC-32, so a member cannot inflate past what it declares.
    """
    info = z.getinfo(name)
    if info.file_size > limit:
        raise ReadRefused(f"{where}: member {name} inflates to {info.file_size:,} bytes, "
                          f"more than the {limit:,} it may have; not read")
    with z.open(info) as member:
        data = member.read(limit + 1)
    if len(data) > limit:
        raise ReadRefused(f"{where}: member {name} inflates to more than {limit:,} bytes; not read")
    return data
