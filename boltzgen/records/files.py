"""Result files: strict JSON, atomic writes and SHA-256 checksums recorded beside them.

Every file a task leaves behind (``result.json``, ``samples.npz``, checkpoints) is
written by :func:`write_atomic`: the bytes go to a temporary file in the same folder,
are flushed to disk (``fsync``) and then renamed over the target, so a process killed
at any instant leaves either the old file or the new one, never a mixture. With
``checksum=True`` the SHA-256 of the bytes is recorded beside the file, as
``NAME.sha256`` in ``sha256sum`` format; :func:`read_verified` reads a file back only
if it matches, so a file cut short or damaged later (a node dying mid-write on a
network file system, a full disk) is detected instead of read.

A write that fails (disk full, quota, file-size limit, unwritable folder) raises
:class:`WriteError` naming the path and the reason; the temporary file is removed and
the files written before are untouched.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor


class WriteError(OSError):
    """A file could not be written; what was written before it is unchanged."""

    def __init__(self, path: Path, error: OSError):
        super().__init__(error.errno, error.strerror)
        self.path = path
        code = errno.errorcode.get(error.errno or 0, "")
        reason = f"{error.strerror or error}" + (f" ({code})" if code else "")
        self.message = (
            f"could not write {path}: {reason}; the files written before it are unchanged"
        )

    def __str__(self) -> str:
        return self.message


class DamagedFile(ValueError):
    """A file that is missing its checksum or does not match it (truncated or corrupted)."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path} {reason}")
        self.path, self.reason = path, reason


def notice(message: str) -> None:
    """Say one line on stderr about a fault that was handled (``boltzgen: ...``)."""
    print(f"boltzgen: {message}", file=sys.stderr, flush=True)


def checksum_path(path: Path) -> Path:
    """Where the checksum of ``path`` is recorded: ``NAME.sha256`` beside it."""
    return path.with_name(path.name + ".sha256")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def _stage(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and flush it to disk."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        _discard(tmp)
        raise WriteError(path, error) from error
    return tmp


def _discard(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


def _commit(tmp: Path, path: Path) -> None:
    """Rename the staged ``tmp`` over ``path`` and make the rename durable."""
    try:
        os.replace(tmp, path)
    except OSError as error:
        _discard(tmp)
        raise WriteError(path, error) from error
    _fsync_folder(path.parent)


def write_atomic(path: str | Path, data: bytes, checksum: bool = False) -> str:
    """Replace ``path`` by ``data`` atomically; with ``checksum``, record its SHA-256 too.

    The data are staged in a temporary file first, so a write that fails changes
    nothing. The checksum is then recorded, and the staged file renamed over ``path``:
    a process killed between the two leaves a file that does not match its checksum,
    which :func:`read_verified` refuses, never a file that matches a checksum it was not
    written with. Returns the hex digest.

    Raises:
        WriteError: the folder cannot be created or written, or the disk is full.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WriteError(path, error) from error
    digest = sha256_bytes(data)
    staged = _stage(path, data)
    if checksum:
        record = checksum_path(path)
        try:
            _commit(_stage(record, f"{digest}  {path.name}\n".encode()), record)
        except WriteError:
            _discard(staged)
            raise
    _commit(staged, path)
    return digest


def recorded_checksum(path: Path) -> str | None:
    """The SHA-256 recorded beside ``path`` (``None`` if there is none or it is unreadable)."""
    try:
        text = checksum_path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return None
    digest = text.split(maxsplit=1)[0] if text.strip() else ""
    return digest if len(digest) == 64 else None


def read_verified(path: str | Path) -> bytes:
    """The bytes of ``path``, checked against the SHA-256 recorded beside it.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DamagedFile: no checksum was recorded, or the bytes do not match it.
    """
    path = Path(path)
    data = path.read_bytes()
    expected = recorded_checksum(path)
    if expected is None:
        raise DamagedFile(
            path, "has no recorded checksum (cut short, or written by an older boltzgen)"
        )
    actual = sha256_bytes(data)
    if actual != expected:
        raise DamagedFile(
            path,
            f"does not match its checksum (sha256 {actual[:12]}…, recorded {expected[:12]}…): "
            "truncated or corrupted",
        )
    return data


def damage(path: str | Path) -> str | None:
    """Why ``path`` cannot be trusted (missing, no checksum, mismatch), or ``None`` if it can."""
    try:
        read_verified(path)
    except FileNotFoundError:
        return f"{path} is missing"
    except DamagedFile as error:
        return str(error)
    return None


def remove_with_checksum(path: Path) -> None:
    """Delete ``path`` and the checksum beside it (absent ones are fine)."""
    path.unlink(missing_ok=True)
    checksum_path(path).unlink(missing_ok=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def json_bytes(data: Mapping[str, Any]) -> bytes:
    """``data`` as strict JSON text: tensors and arrays as lists, non-finite floats as null."""
    return (json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n").encode()


def write_json(path: Path, data: Mapping[str, Any], checksum: bool = False) -> None:
    """Write ``data`` as strict JSON, atomically (and with its checksum if asked)."""
    write_atomic(path, json_bytes(data), checksum)


def verified_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at ``path`` if it matches its checksum, else ``None``."""
    if damage(path) is not None:
        return None
    return json.loads(read_verified(path))


def readable_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at ``path`` if it matches its checksum or, having none recorded (a
    file of an older boltzgen), parses; ``None`` if it is missing or damaged."""
    if recorded_checksum(path) is not None:
        return verified_json(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
