"""The Makefile and .ci/run say which pytest markers CI leaves out, and say all of them."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def ci_excluded_markers() -> list[str]:
    """Markers that `make test` with CI=true deselects (its PYTEST_ARGS -m expression)."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    (expression,) = re.findall(r'^PYTEST_ARGS \?= -m "([^"]+)"', makefile, flags=re.MULTILINE)
    return re.findall(r"not (\w+)", expression)


def header(path: Path) -> str:
    """The leading comment block of a file, without the comment signs."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#!"):
            continue
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def test_ci_leaves_out_gpu_cuda_image_and_heavy_tests() -> None:
    assert ci_excluded_markers() == ["gpu", "cuda_image", "heavy"]


def test_make_test_help_names_every_marker_ci_leaves_out() -> None:
    (line,) = [ln for ln in header(REPO / "Makefile").split("make ") if ln.startswith("test ")]
    for marker in ci_excluded_markers():
        assert re.search(rf"\b{marker}\b", line), f"Makefile: `make test` help omits {marker}"


def test_ci_run_header_names_every_marker_ci_leaves_out() -> None:
    text = header(REPO / ".ci" / "run")
    for marker in ci_excluded_markers():
        assert re.search(rf"\b{marker}\b", text), f".ci/run: header omits {marker}"
