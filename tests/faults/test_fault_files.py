"""Atomic, checksummed files: a file cut at any byte or corrupted is detected; a write
that fails (file-size limit, unwritable folder) names the path and the reason and leaves
the earlier file intact."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from boltzgen.records.files import (
    DamagedFile,
    WriteError,
    checksum_path,
    damage,
    read_verified,
    write_atomic,
)

DATA = np.random.default_rng(0).bytes(4096)


def test_write_records_the_sha256_beside_the_file_in_sha256sum_format(tmp_path):
    path = tmp_path / "a" / "samples.npz"
    digest = write_atomic(path, DATA, checksum=True)
    assert digest == hashlib.sha256(DATA).hexdigest()
    assert checksum_path(path).read_text() == f"{digest}  samples.npz\n"
    assert read_verified(path) == DATA
    assert {p.name for p in path.parent.iterdir()} == {"samples.npz", "samples.npz.sha256"}


@pytest.mark.parametrize("seed", range(5))
def test_a_file_cut_at_a_random_byte_is_detected(tmp_path, seed):
    path = tmp_path / "result.json"
    write_atomic(path, DATA, checksum=True)
    cut = int(np.random.default_rng(seed).integers(0, len(DATA)))
    path.write_bytes(DATA[:cut])
    with pytest.raises(DamagedFile, match="does not match its checksum"):
        read_verified(path)
    assert "truncated or corrupted" in damage(path)


@pytest.mark.parametrize("seed", range(3))
def test_a_flipped_byte_is_detected(tmp_path, seed):
    path = tmp_path / "checkpoint.pt"
    write_atomic(path, DATA, checksum=True)
    position = int(np.random.default_rng(seed).integers(0, len(DATA)))
    damaged = bytearray(DATA)
    damaged[position] ^= 0xFF
    path.write_bytes(bytes(damaged))
    assert damage(path) is not None


def test_a_file_without_its_checksum_is_not_trusted(tmp_path):
    path = tmp_path / "result.json"
    write_atomic(path, DATA)
    assert "no recorded checksum" in damage(path)
    assert damage(tmp_path / "absent.json").endswith("is missing")


def test_an_unwritable_folder_fails_with_the_path_and_the_reason(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(WriteError) as caught:
        write_atomic(blocker / "run" / "result.json", DATA, checksum=True)
    message = str(caught.value)
    assert str(blocker / "run" / "result.json") in message
    assert "Not a directory (ENOTDIR)" in message


SIZE_LIMITED = """
import resource, signal, sys
from pathlib import Path
from boltzgen.records.files import WriteError, write_atomic
path = Path(sys.argv[1])
write_atomic(path, b"small and good", checksum=True)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # exceeding the limit gives EFBIG, not a signal
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    write_atomic(path, bytes(100_000), checksum=True)
except WriteError as error:
    print(error)
    sys.exit(3)
"""


def test_a_full_disk_fails_cleanly_and_the_earlier_file_stays_valid(tmp_path):
    """RLIMIT_FSIZE stands in for a full disk: the write fails with EFBIG."""
    path = tmp_path / "samples.npz"
    done = subprocess.run(
        [sys.executable, "-c", SIZE_LIMITED, str(path)], capture_output=True, text=True
    )
    assert done.returncode == 3, done.stderr
    assert f"could not write {path}: File too large (EFBIG)" in done.stdout
    assert read_verified(path) == b"small and good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.npz", "samples.npz.sha256"]
