"""requirements.txt lists exactly the packages the code imports: none unused (a listed package
nobody imports is noise and install time), none missing (one that only arrives as another
package's dependency can disappear with that package's next release); pyproject.toml declares the
same requirements (its dependencies and extras), with the same versions."""
import ast
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: the import name of a distribution, where the two differ
IMPORT_NAME = {"pyyaml": "yaml", "scikit-image": "skimage", "tensorboard": "torch.utils.tensorboard", "onnx-ir": "onnx_ir"}
#: imported only where present (guarded by try / except ImportError), never required
OPTIONAL = {"triton"}
#: what the tests need, not the package
FOR_TESTS = {"pytest"}


def _parse(lines):
    """{distribution name: its version specifier, blanks removed} of requirement lines; a name
    given twice is an error."""
    found = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            name = re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0]
            key = re.sub(r"[-_.]+", "-", name).lower()
            assert key not in found, f"{key} is listed twice"
            found[key] = line[len(name):].replace(" ", "")
    return found


def _requirements():
    return list(_parse((REPO / "requirements.txt").read_text().splitlines()))


def _pyproject():
    """pyproject.toml's requirements: {'dependencies': {...}, '<extra>': {...} for each extra}."""
    tomllib = pytest.importorskip("tomllib", reason="needs Python 3.11's tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    groups = {"dependencies": project["dependencies"], **project.get("optional-dependencies", {})}
    return {group: _parse(lines) for group, lines in groups.items()}


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


def test_pyproject_and_requirements_txt_declare_the_same_requirements():
    """``pip install -r requirements.txt`` (the README's install) and ``pip install -e ".[cpu,test]"``
    install the same packages at the same versions: neither file can gain or change one alone."""
    groups = _pyproject()
    declared = {}
    for group, reqs in groups.items():
        twice = set(declared) & set(reqs)
        assert not twice, f"pyproject.toml declares {sorted(twice)} in two places"
        declared.update(reqs)
    listed = _parse((REPO / "requirements.txt").read_text().splitlines())
    only_txt = {n: v for n, v in listed.items() if declared.get(n) != v}
    only_toml = {n: v for n, v in declared.items() if listed.get(n) != v}
    assert not only_txt and not only_toml, (f"requirements.txt alone: {only_txt}; pyproject.toml alone: {only_toml}")


def test_the_cpu_runtimes_are_an_extra_and_the_tests_another():
    """The ONNX export and the CPU runtimes (docs/inference.md) are the ``cpu`` extra: a GPU install
    can leave them out; pytest is the ``test`` extra."""
    groups = _pyproject()
    assert set(groups["cpu"]) == {"onnx", "onnxscript", "onnx-ir", "onnxruntime", "openvino"}, groups["cpu"]
    assert set(groups["test"]) == FOR_TESTS and "torch" in groups["dependencies"], groups
