"""The oldest PyTorch the package accepts: checked on import, with one plain sentence."""
import re
import subprocess
import sys

import pytest
from helpers import REPO

from cans.requirements import MIN_TORCH, check_torch_version, release


@pytest.mark.parametrize("version", ["2.1.2+cu121", "2.3.1", "1.13.1", "2.0.0"])
def test_an_older_torch_is_refused_with_the_fix(version):
    with pytest.raises(ImportError, match=re.escape(f"CANS needs PyTorch >= 2.4, but this environment has torch "
                                                    f"{version}: pip install --upgrade -r requirements.txt")):
        check_torch_version(version)


@pytest.mark.parametrize("version", ["2.4.0", "2.4.1+cu121", "2.11.0+cu130", "2.15.0a0+git1234", "3.0", "nightly"])
def test_a_recent_or_unreadable_version_passes(version):
    check_torch_version(version)  # an unreadable version is not refused: torch's own import decides


def test_release_reads_major_and_minor():
    assert release("2.4.1+cu121") == (2, 4) and release("2.15.0a0+git1") == (2, 15) and release("x") is None


def test_requirements_floor_is_the_checked_one():
    """requirements.txt asks pip for the same oldest torch the import check accepts."""
    lines = [ln.strip() for ln in (REPO / "requirements.txt").read_text().splitlines()]
    floor = [ln for ln in lines if re.match(r"torch\s*>=", ln)]
    assert floor == [f"torch>={MIN_TORCH[0]}.{MIN_TORCH[1]}"], lines


def test_pyproject_floor_is_the_checked_one():
    """pyproject.toml (``pip install -e .``) asks for the same oldest torch too."""
    tomllib = pytest.importorskip("tomllib", reason="needs Python 3.11's tomllib")
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert [d for d in deps if re.match(r"torch\s*[<>=!~]", d)] == [f"torch>={MIN_TORCH[0]}.{MIN_TORCH[1]}"], deps


def test_import_refuses_an_old_torch_before_anything_runs(tmp_path):
    """``import cans`` with a torch that reports 2.1.2 (its metadata faked): the ImportError names
    the version and the fix, and torch itself was not imported for the check."""
    script = (
        "import sys\n"
        "from importlib import metadata\n"
        "real = metadata.version\n"
        "metadata.version = lambda name: '2.1.2+cu121' if name == 'torch' else real(name)\n"
        "try:\n"
        "    import cans\n"
        "except ImportError as exc:\n"
        "    print('refused:', exc, 'torch imported:', 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "refused: CANS needs PyTorch >= 2.4, but this environment has torch 2.1.2+cu121" in proc.stdout
    assert "torch imported: False" in proc.stdout
