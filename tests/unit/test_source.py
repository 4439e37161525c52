"""One revision rule: the agent's provenance and harness.source agree on a git tree's state."""

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.agent.environment import git_revision
from harness.source import source_info

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git executable")


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t",
                    "-c", "commit.gpgsign=false", *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("HARNESS_GIT_REVISION", raising=False)
    _git(tmp_path, "init", "-q")
    (tmp_path / "tracked.py").write_text("x = 1\n", encoding="utf-8")
    _git(tmp_path, "add", "tracked.py")
    _git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def _head(root: Path) -> str:
    return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


def test_a_clean_tree_is_its_commit_in_both(repo: Path):
    assert source_info(repo).revision == _head(repo)
    assert git_revision(repo) == (_head(repo), "git checkout")


def test_an_untracked_file_makes_both_dirty(repo: Path):
    (repo / "new_module.py").write_text("y = 2\n", encoding="utf-8")
    expected = _head(repo) + "+dirty"
    assert source_info(repo).dirty is True
    assert source_info(repo).revision == expected
    assert git_revision(repo) == (expected, "git checkout")


def test_an_ignored_file_leaves_both_clean(repo: Path):
    (repo / ".gitignore").write_text("*.log\n", encoding="utf-8")
    _git(repo, "add", ".gitignore")
    _git(repo, "commit", "-q", "-m", "ignore logs")
    (repo / "run.log").write_text("noise\n", encoding="utf-8")
    assert source_info(repo).revision == _head(repo)
    assert git_revision(repo)[0] == _head(repo)


def test_the_environment_variable_wins_where_there_is_no_git(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HARNESS_GIT_REVISION", "abc123+dirty")
    assert git_revision(tmp_path) == ("abc123+dirty", "HARNESS_GIT_REVISION")
    monkeypatch.delenv("HARNESS_GIT_REVISION")
    revision, why = git_revision(tmp_path)
    assert revision is None and "not a git checkout" in why
