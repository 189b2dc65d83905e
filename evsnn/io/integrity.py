"""The integrity layer of an evsnn model file: a digest in HDF5's user block.

A version-2 file starts with a 512-byte user block, which HDF5 reserves for
applications and never parses, followed by the HDF5 file proper::

    bytes 0-15    MAGIC, b"\\x89EVSNN-HDF5\\r\\n\\x1a\\n\\x00" (PNG-style: catches text-mode copies)
    bytes 16-23   total file length in bytes, uint64 little-endian
    bytes 24-55   SHA-256 of bytes 512 to the end of the file
    bytes 56-511  zero

:func:`read_verified` reads a file with plain Python I/O and checks this
block *before* libhdf5 sees a single byte, so a damaged file (any changed
byte, flipped bit, truncation or appended data) is refused with
``checksum mismatch`` instead of reaching a parser that may crash on it.
The digest detects damage, not malice: a hostile sender can compute it too;
the structural checks in :mod:`evsnn.io.hdf5` are what make such files safe.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct

from ..checks import file_kind
from ..errors import FormatError

__all__ = ["USERBLOCK_SIZE", "MAGIC", "HDF5_SIGNATURE", "MAX_FILE_BYTES", "header", "stamp", "read_verified",
           "read_regular"]

#: Size of HDF5's user block that holds the header (the smallest HDF5 allows).
USERBLOCK_SIZE = 512
MAGIC = b"\x89EVSNN-HDF5\r\n\x1a\n\x00"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Largest model file :func:`read_verified` reads (the file is read whole, then parsed from memory).
MAX_FILE_BYTES = 8 * 2**30

_FIELDS = struct.Struct("<16sQ32s")
assert len(MAGIC) == 16 and _FIELDS.size <= USERBLOCK_SIZE


def header(body: bytes | memoryview, length: int) -> bytes:
    """The 512-byte user block for a file of ``length`` bytes whose HDF5 part is ``body``."""
    fields = _FIELDS.pack(MAGIC, length, hashlib.sha256(body).digest())
    return fields.ljust(USERBLOCK_SIZE, b"\x00")


def stamp(path: str | os.PathLike) -> None:
    """Write the header into the user block of the HDF5 file at ``path`` (made with ``userblock_size=512``)."""
    with open(path, "r+b") as fh:
        data = fh.read()
        if data[USERBLOCK_SIZE:USERBLOCK_SIZE + len(HDF5_SIGNATURE)] != HDF5_SIGNATURE:
            raise FormatError(f"{os.fspath(path)}: no HDF5 file after a {USERBLOCK_SIZE}-byte user block.")
        fh.seek(0)
        fh.write(header(memoryview(data)[USERBLOCK_SIZE:], len(data)))
        fh.flush()
        os.fsync(fh.fileno())


def read_verified(path: str) -> tuple[bytes, int]:
    """Read a model file whole and check its integrity; return ``(bytes, layout version)``.

    The layout version is 2 for a file with a valid header, 1 for a file that
    starts with the HDF5 signature (written by evsnn before 0.2: no digest).
    Only a regular file is opened, without blocking (a FIFO or device never
    hangs the reader).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    FormatError
        Not a regular file, too large, not an evsnn file, or ``checksum mismatch``.
    """
    data = read_regular(path, MAX_FILE_BYTES, what="evsnn models")
    if data.startswith(HDF5_SIGNATURE):
        return data, 1
    if not (data.startswith(MAGIC) or data[USERBLOCK_SIZE:USERBLOCK_SIZE + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE):
        raise FormatError(
            f"{path}: file must be an HDF5 file written by evsnn.save(), got a file that starts with "
            f"neither the evsnn header nor the HDF5 signature ({len(data)} bytes)."
        )
    if len(data) < USERBLOCK_SIZE:
        raise FormatError(f"{path}: checksum mismatch: the file is truncated to {len(data)} bytes, shorter than "
                          f"its {USERBLOCK_SIZE}-byte header.")
    magic, length, _ = _FIELDS.unpack_from(data)
    if magic == MAGIC and length != len(data):
        raise FormatError(f"{path}: checksum mismatch: the file is {len(data)} bytes but was saved with {length} "
                          f"({'truncated' if len(data) < length else 'bytes appended or header damaged'}).")
    if data[:USERBLOCK_SIZE] != header(memoryview(data)[USERBLOCK_SIZE:], len(data)):
        raise FormatError(f"{path}: checksum mismatch: the file is damaged (its SHA-256 digest or header "
                          "differs from the one written by evsnn.save()). Get an intact copy.")
    return data, 2


def read_regular(path: str, max_bytes: int, *, what: str) -> bytes:
    """The bytes of the regular file at ``path`` (at most ``max_bytes``), opened without blocking.

    A FIFO or device never hangs the reader, and the file checked is the file
    read (``fstat`` after ``open``). ``what`` names the kind of file in the
    size message, e.g. ``"evsnn models"``.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    FormatError
        Not a regular file, unreadable, or larger than ``max_bytes``.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file.") from None
    except OSError as err:
        raise FormatError(f"{path}: cannot be read: {err.strerror or err}.") from err
    _check_regular(path, st.st_mode)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise FormatError(f"{path}: cannot be read: {err.strerror or err}.") from err
    with open(fd, "rb", closefd=True) as fh:
        st = os.fstat(fh.fileno())  # the file actually opened (the path may have changed since os.stat)
        _check_regular(path, st.st_mode)
        if st.st_size > max_bytes:
            raise FormatError(f"{path}: file is {st.st_size} bytes, more than the {max_bytes}-byte limit "
                              f"for {what}.")
        data = fh.read(max_bytes + 1)
    return data


def _check_regular(path: str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise FormatError(f"{path}: model file must be a regular file, got {file_kind(mode)}.")
