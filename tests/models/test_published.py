"""Recognising the authors' published weights by their git blob id."""
import shutil
import subprocess

import pytest

from cans.models.published import PUBLISHED, describe_weights, git_blob_id, published_name


@pytest.mark.parametrize("content", [b"", b"x", bytes(range(256)) * 5000], ids=["empty", "one-byte", "1.3MB"])
def test_blob_id_is_what_git_prints(tmp_path, content):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    path = tmp_path / "w.pth"
    path.write_bytes(content)
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
    assert git_blob_id(str(path), chunk=4096) == expected.stdout.strip()


def test_published_files_are_named(tmp_path):
    assert set(v[0] for v in PUBLISHED.values()) == {"CANS", "CANS_Plus"}
    assert "pretrained_weights/CANS_Plus/Sony.pth" in published_name("f9bdd25453632c7df28ed2d4ab043a9df39ba6df")
    assert "pretrained_weights/CANS/Sony.pth" in published_name("1c9f222a413051f07642edb35467c6a5c2f709bd")
    path = tmp_path / "mine.pth"
    path.write_bytes(b"not the authors' file")
    info = describe_weights(str(path))
    assert info["published"] is None and len(info["git_blob"]) == 40
