"""The run-folder lock: one ``boltzgen run`` at a time on a run folder.

``RUN_DIR/run.lock`` holds the holder's host, pid, process start time and command. It
is created with a hard link from a complete temporary file, so a reader never sees a
half-written lock, and the check-then-take step runs under an ``flock`` on
``RUN_DIR/.run.lock.guard`` so two runs that find a stale lock cannot both take it.

A lock is stale when its holder ran on this host and that process is gone (or the pid
now belongs to a process started at another time). A lock from another host cannot be
checked from here: it is respected, and the message says how to remove it by hand.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from boltzgen.records.files import notice

LOCK_NAME = "run.lock"
GUARD_NAME = ".run.lock.guard"


@dataclass(frozen=True)
class Holder:
    """Who holds a run folder: host, pid, the process's start time (clock ticks), command."""

    host: str
    pid: int
    started: float
    process_start: int | None
    command: str

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on {self.host} (since {when}: {self.command})"


class RunFolderLocked(RuntimeError):
    """Another ``boltzgen run`` holds the run folder."""


def _process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (``/proc``), if known."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def me() -> Holder:
    """This process as a lock holder."""
    pid = os.getpid()
    command = " ".join(["boltzgen", *sys.argv[1:]]) if sys.argv else "python"
    return Holder(socket.gethostname(), pid, time.time(), _process_start(pid), command)


def is_alive(holder: Holder) -> bool | None:
    """Whether the holder still runs: ``None`` when it ran on another host (unknowable)."""
    if holder.host != socket.gethostname():
        return None
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    started = _process_start(holder.pid)
    return holder.process_start is None or started is None or started == holder.process_start


def read_holder(run_dir: Path) -> Holder | None:
    """The holder recorded in ``run_dir``'s lock, or ``None`` if it has none (or it is garbled)."""
    try:
        return Holder(**json.loads((run_dir / LOCK_NAME).read_text()))
    except (OSError, ValueError, TypeError):
        return None


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file at ``path`` (created with its folder) while the
    block runs; the kernel releases it if the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _guard(run_dir: Path) -> AbstractContextManager[None]:
    return locked(run_dir / GUARD_NAME)


def _try_take(run_dir: Path, holder: Holder) -> Holder | None:
    """Take the lock; return the live (or unknowable) holder that prevents it, if any."""
    path = run_dir / LOCK_NAME
    with _guard(run_dir):
        current = read_holder(run_dir)
        if current is not None and is_alive(current) is False:
            notice(f"removing the stale lock of {current.describe()}: that process is gone")
            path.unlink(missing_ok=True)
        elif current is None and path.exists():
            notice(f"removing the unreadable lock {path}")
            path.unlink(missing_ok=True)
        tmp = run_dir / f".{LOCK_NAME}.{holder.pid}.tmp"
        tmp.write_text(json.dumps(asdict(holder)))
        try:
            os.link(tmp, path)
        except FileExistsError:
            return read_holder(run_dir) or current
        finally:
            tmp.unlink(missing_ok=True)
    return None


def _refusal(run_dir: Path, holder: Holder) -> str:
    alive = is_alive(holder)
    hint = (
        "wait for it, stop it, or rerun with --wait to start when it ends"
        if alive
        else f"if no run is active there, delete {run_dir / LOCK_NAME}"
    )
    return f"{run_dir} is in use by another boltzgen run, {holder.describe()}: {hint}"


def acquire(
    run_dir: Path,
    wait: bool = False,
    poll_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Holder:
    """Take ``run_dir``'s lock, waiting for the holder to finish if ``wait``.

    Raises:
        RunFolderLocked: another run holds it (and ``wait`` is false).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    holder, announced = me(), False
    while (other := _try_take(run_dir, holder)) is not None:
        if not wait:
            raise RunFolderLocked(_refusal(run_dir, other))
        if not announced:
            notice(f"waiting for the run of {other.describe()} to finish with {run_dir}")
            announced = True
        sleep(poll_s)
    return holder


def release(run_dir: Path, holder: Holder) -> None:
    """Remove the lock if ``holder`` still holds it."""
    with _guard(run_dir):
        current = read_holder(run_dir)
        if current is not None and (current.host, current.pid) == (holder.host, holder.pid):
            (run_dir / LOCK_NAME).unlink(missing_ok=True)


@contextmanager
def run_folder_lock(run_dir: Path, wait: bool = False) -> Iterator[Holder]:
    """Hold ``run_dir``'s lock while the block runs.

    A folder this creates and the block leaves empty (e.g. a run refused by its checks)
    is removed again.
    """
    existed = run_dir.exists()
    holder = acquire(run_dir, wait)
    try:
        yield holder
    finally:
        release(run_dir, holder)
        guard = run_dir / GUARD_NAME
        if not existed and [p.name for p in run_dir.iterdir()] == [GUARD_NAME]:
            guard.unlink()
            run_dir.rmdir()
