"""Locks shared by the daemon's processes: itself and its LMTP workers.

One anonymous file (memfd) made by the daemon and inherited by the
workers; a named lock is a one-byte range of it at an offset its name
hashes to, taken as an open file description lock (F_OFD_SETLKW, Linux):
each holder opens the file anew, so the lock belongs to that opening, not
to the process. Two threads of one process then exclude each other as two
processes do, the kernel sees no false deadlock between processes (POSIX
record locks are per process, and would), and a process that dies lets go
of what it held.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import struct

# struct flock on Linux (x86_64, aarch64): l_type, l_whence, l_start, l_len,
# l_pid (0 for OFD locks), padded to 32 bytes.
_FLOCK = "hhqqi4x"
_OFFSETS = 2 ** 48      # names hash into this many bytes: a collision only makes one wait


class SharedLocks:
    def __init__(self, fd: int | None = None):
        """fd: the file a parent made (a worker's inheritance); None: a new one."""
        self.fd = os.memfd_create("tmail-locks", os.MFD_CLOEXEC) if fd is None else fd

    @contextlib.contextmanager
    def hold(self, name: str):
        """Hold the lock called `name`, waiting for it as long as it takes."""
        offset = int.from_bytes(hashlib.blake2b(name.encode("utf-8", "surrogateescape"),
                                                digest_size=6).digest(), "big") % _OFFSETS
        handle = os.open(f"/proc/self/fd/{self.fd}", os.O_RDWR | os.O_CLOEXEC)
        try:
            # blocks without the GIL; closing the handle releases the lock
            fcntl.fcntl(handle, fcntl.F_OFD_SETLKW, struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET,
                                                                offset, 1, 0))
            yield
        finally:
            os.close(handle)

    def close(self) -> None:
        os.close(self.fd)
