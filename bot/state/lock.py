"""One bot per state dir: an exclusive OS lock on ``state.dir/guardbot.lock``.

``StateLock.acquire`` takes a non-blocking ``flock`` on the lock file and writes the holder's pid
into it. The kernel drops the lock when the process ends, however it ends (a ``kill -9``
included), so nothing is left to clean up; the pid in the file is only for the message a second
bot gets: ``LockHeld`` names it, and ``guardbot run`` exits 2 with that one line. Commands that
only read the store or leave requests in it (``halt``, ``resume``, ``reload``, ``history``,
``health``) take no lock and work beside the running bot.

One exchange account needs one bot: two bots trading one account double its positions and fight
over its stops, and two on one state dir would also share one store.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

FILENAME = "guardbot.lock"


class LockHeld(Exception):
    """Another process holds the state dir."""

    def __init__(self, path: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid is not None else "another process"
        super().__init__(
            f"state dir {path.parent} is in use by another guardbot ({who}); one state dir "
            "and one exchange account take one bot"
        )
        self.path = path
        self.pid = pid


class StateLock:
    """The exclusive lock of one state dir (a context manager)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / FILENAME
        self._fd: int | None = None

    def acquire(self) -> StateLock:
        """Take the lock or raise ``LockHeld`` at once (never waits)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockHeld(self.path, holder(self.path)) from None
        except BaseException:
            os.close(fd)
            raise
        with contextlib.suppress(OSError):  # a full disk: the lock holds, the pid is not named
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> StateLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def holder(path: Path) -> int | None:
    """The pid written in a lock file (None when unreadable)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def in_use(state_dir: Path) -> int | None:
    """The pid of the bot holding ``state_dir`` (None when no process holds it)."""
    lock = StateLock(state_dir)
    if not lock.path.exists():
        return None
    try:
        lock.acquire()
    except LockHeld as held:
        return held.pid if held.pid is not None else -1
    lock.release()
    return None
