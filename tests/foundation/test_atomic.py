"""Files replaced atomically (atomic.py): a reader sees the old file or the new one, never half of
one; a failed write leaves the old file and no file aside."""

from __future__ import annotations

from pathlib import Path

import pytest

from goat_dagster import atomic


def test_the_old_file_stays_until_the_new_one_is_complete(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "record.json"
    atomic.write_text(target, "old")  # the directory is made
    with atomic.written_aside(target) as tmp:
        tmp.write_text("half")
        assert target.read_text() == "old"  # a reader meanwhile
        assert tmp.parent == target.parent and tmp.name.startswith(".") and tmp.suffix == ".tmp"
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["record.json"]


def test_a_failed_write_or_check_leaves_the_old_file_and_nothing_aside(tmp_path: Path) -> None:
    target = tmp_path / "models.yaml"
    target.write_text("old")
    with pytest.raises(ValueError, match="check failed"), atomic.written_aside(target, suffix=".yaml") as tmp:
        tmp.write_text("broken")
        assert tmp.suffix == ".yaml"  # a check that reads it by its extension
        raise ValueError("check failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["models.yaml"]


def test_two_writers_of_one_target_never_share_a_file_aside(tmp_path: Path) -> None:
    target = tmp_path / "results.parquet"
    with atomic.written_aside(target) as first, atomic.written_aside(target) as second:
        assert first != second
        assert not first.match("*.parquet") and not second.match("*.parquet")  # outside a lake's glob
        first.write_text("a")
        second.write_text("b")
    assert target.read_text() == "a"  # the last rename wins, each complete
    assert [p.name for p in tmp_path.iterdir()] == ["results.parquet"]
