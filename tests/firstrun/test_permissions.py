"""Written files get the permissions the umask gives, still written atomically."""

from __future__ import annotations

import os
import stat
import zipfile

import pytest

from medclip_cli.atomic import atomic_dir, atomic_open, write_text_atomic


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    os.umask(old)
    yield set_mask
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775), (0o077, 0o600, 0o700)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    report = write_text_atomic(tmp_path / "report.md", "# r\n")
    with atomic_open(tmp_path / "model.safetensors") as fh:
        fh.write(b"x")
    with atomic_dir(tmp_path / "run") as folder:
        (folder / "results.json").write_text("{}")
    assert _mode(report) == file_mode
    assert _mode(tmp_path / "model.safetensors") == file_mode
    assert _mode(tmp_path / "run") == dir_mode
    # a plain open() beside them gets the same mode: the atomic route changes nothing users see
    (tmp_path / "plain").write_text("x")
    assert _mode(tmp_path / "plain") == file_mode
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_overwriting_keeps_the_umask_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "results.json"
    write_text_atomic(path, "old")
    write_text_atomic(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o644


def test_unpacked_data_set_is_readable_by_others(tmp_path, umask):
    from medclip_cli.data.archives import unpack

    umask(0o022)
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("repo-main/README.md", "hi")
    unpack(archive, tmp_path / "medpix2")
    assert _mode(tmp_path / "medpix2") == 0o755
