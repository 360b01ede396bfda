"""The one atomic write (gentools.files) and the helpers beside it."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from gentools.files import atomic_write, read_json, sha256_file, write_json


def test_write_json_is_strict_and_leaves_only_the_file(tmp_path: Path) -> None:
    path = write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    assert json.loads(path.read_text()) == {"b": 1, "a": [1, 2]}
    assert list(json.loads(path.read_text())) == ["b", "a"]  # insertion order unless sorted
    with pytest.raises(ValueError):
        write_json(path, {"x": float("nan")})
    assert json.loads(path.read_text()) == {"b": 1, "a": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_writer_that_fails_half_way_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "data.bin"
    atomic_write(path, lambda tmp: tmp.write_bytes(b"old"))

    def half(tmp: Path) -> None:
        tmp.write_bytes(b"ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half)
    assert path.read_bytes() == b"old"
    assert [p.name for p in path.parent.iterdir()] == ["data.bin"]


def test_the_file_gets_the_usual_mode(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    path = atomic_write(tmp_path / "x", lambda tmp: tmp.write_text("x"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"abc" * 1000)
    assert sha256_file(path, chunk_size=7) == hashlib.sha256(b"abc" * 1000).hexdigest()


def test_read_json_with_a_default_for_a_missing_or_broken_file(tmp_path: Path) -> None:
    (tmp_path / "half.json").write_text('{"status": "runn')
    assert read_json(tmp_path / "missing.json", {}) == {}
    assert read_json(tmp_path / "half.json", None) is None
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "missing.json")
    with pytest.raises(ValueError):
        read_json(tmp_path / "half.json")
