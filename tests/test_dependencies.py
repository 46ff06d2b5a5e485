"""requirements.txt lists exactly the packages the code imports: none unused (a listed package
nobody imports is noise and install time), none missing (one that only arrives as another
package's dependency can disappear with that package's next release)."""
import ast
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: the import name of a distribution, where the two differ
IMPORT_NAME = {"pyyaml": "yaml", "scikit-image": "skimage", "tensorboard": "torch.utils.tensorboard"}
#: imported only where present (guarded by try / except ImportError), never required
OPTIONAL = {"triton"}
#: what the tests need, not the package
FOR_TESTS = {"pytest"}


def _requirements():
    names = []
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.append(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower())
    return names


def _imports():
    """The modules imported (absolutely) by the package, the scripts and the entry points."""
    files = [*(REPO / "cans").rglob("*.py"), *(REPO / "scripts").glob("*.py"), REPO / "train.py", REPO / "test.py"]
    found = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.add(node.module)
    return found


def test_every_listed_package_is_imported():
    imports = _imports()
    unused = [name for name in _requirements() if name not in FOR_TESTS
              and not any(m == IMPORT_NAME.get(name, name) or m.startswith(IMPORT_NAME.get(name, name) + ".")
                          for m in imports)]
    assert not unused, f"listed in requirements.txt but imported nowhere: {unused}"


def test_every_package_the_code_imports_is_listed():
    listed = {IMPORT_NAME.get(name, name).split(".")[0] for name in _requirements()}
    if not hasattr(sys, "stdlib_module_names"):  # Python 3.9
        pytest.skip("needs Python 3.10's sys.stdlib_module_names")
    stdlib = set(sys.stdlib_module_names)
    missing = sorted({m.split(".")[0] for m in _imports()} - stdlib - listed - OPTIONAL - {"cans"})
    assert not missing, f"imported but not in requirements.txt: {missing}"
