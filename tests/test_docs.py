"""The front page and docs/: README short, every relative link and every docs/ reference in code
points at a file of the repository, and no reference to design notes outside it."""
import re

from helpers import REPO


def _text_files():
    """The repository's text files (not hidden folders, run folders or data sets)."""
    for pattern in ("*.md", "*.py", "*.yaml", "*.sh"):
        for path in REPO.rglob(pattern):
            parts = path.relative_to(REPO).parts
            if any(p.startswith(".") for p in parts) or parts[0] == "runs":
                continue
            if parts[0] == "datasets" and parts[1:] != ("README.md",):
                continue
            yield path


def test_readme_is_a_front_page():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    assert "\npython -m pytest -q\n" in text  # .ci/run runs exactly this command
    for must in ("github.com/csmty/CANS", "@inproceedings", "Rethinking Reconstruction and Denoising in the Dark",
                 "sh train.sh configs/demo.yaml", "pip install -r requirements.txt", "git hash-object",
                 "1c9f222a413051f07642edb35467c6a5c2f709bd", "f9bdd25453632c7df28ed2d4ab043a9df39ba6df",
                 "sh test.sh configs/CANS_Plus/Sony.yaml pretrained_weights/CANS_Plus/Sony.pth",
                 "runs/CANS_Plus_demo/checkpoints/best.pth", "MIT", "30.856"):
        assert must in text, must


def test_relative_links_point_at_files():
    for md in [REPO / "README.md", REPO / "datasets" / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", md.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            path = (md.parent / target).resolve()
            assert path.exists(), f"{md.relative_to(REPO)} links to a missing {target}"


def test_code_points_at_docs_that_exist_and_nothing_outside_the_repository():
    design = "DESIGN" + ".md"
    for path in _text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        assert design not in text, f"{path.relative_to(REPO)} names {design}"
        if path.relative_to(REPO).parts[0] != "tests":  # only the tests may read the developers' reference folder
            assert "shared/reference" not in text, f"{path.relative_to(REPO)} points at the developers' reference folder"
        for ref in re.findall(r"\bdocs/[A-Za-z_]+\.md", text):
            assert (REPO / ref).is_file(), f"{path.relative_to(REPO)} names a missing {ref}"
