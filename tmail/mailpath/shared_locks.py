"""Locks shared by the daemon's processes: itself and its LMTP workers;
and, in the same file, a note per held lock that its message went out.

One anonymous file (memfd) made by the daemon and inherited by the
workers; a named lock is a one-byte range of it at an offset its name
hashes to, taken as an open file description lock (F_OFD_SETLKW, Linux):
each holder opens the file anew, so the lock belongs to that opening, not
to the process. Two threads of one process then exclude each other as two
processes do, the kernel sees no false deadlock between processes (POSIX
record locks are per process, and would), and a process that dies lets go
of what it held.

The note: a process that dies between the reinjection's 250 and the
forward's record in the database (killed, out of memory) would leave
Postfix to retry a message that went out. The holder writes, the moment
the 250 comes, a 32-byte digest of the lock's name and the message into a
slot of the file the name hashes to; the next holder of that name (in any
process, for as long as the daemon runs) finds it and does not send again.
Two names sharing a slot only overwrite each other's note: a second copy
then remains possible, as it was without the note, never a lost message.
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
_NOTES = 65_536         # slots of 32 bytes for the notes (2 MiB of the file at most)


class SharedLocks:
    def __init__(self, fd: int | None = None):
        """fd: the file a parent made (a worker's inheritance); None: a new one."""
        self.fd = os.memfd_create("tmail-locks", os.MFD_CLOEXEC) if fd is None else fd

    @contextlib.contextmanager
    def hold(self, name: str):
        """Hold the lock called `name` (a Held), waiting for it as long as it takes."""
        key = hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=8).digest()
        handle = os.open(f"/proc/self/fd/{self.fd}", os.O_RDWR | os.O_CLOEXEC)
        try:
            # blocks without the GIL; closing the handle releases the lock
            fcntl.fcntl(handle, fcntl.F_OFD_SETLKW, struct.pack(
                _FLOCK, fcntl.F_WRLCK, os.SEEK_SET, int.from_bytes(key[:6], "big") % _OFFSETS, 1, 0))
            yield Held(self.fd, name, 32 * (int.from_bytes(key[6:], "big") % _NOTES))
        finally:
            os.close(handle)

    def close(self) -> None:
        os.close(self.fd)


class Held:
    """A lock being held, and its slot for the note that its message went out."""

    def __init__(self, fd: int, name: str, slot: int):
        self.fd, self.name, self.slot = fd, name, slot

    def _note(self, message: str) -> bytes:
        return hashlib.blake2b(f"{self.name}\0{message}".encode("utf-8", "surrogateescape"),
                               digest_size=32).digest()

    def note_sent(self, message: str) -> None:
        """`message` (a digest of it) went out under this lock."""
        os.pwrite(self.fd, self._note(message), self.slot)

    def sent(self, message: str) -> bool:
        return os.pread(self.fd, 32, self.slot) == self._note(message)
