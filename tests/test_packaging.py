"""What a release carries: the sdist holds what `python -m pytest` needs from an unpacked tree,
the license travels in the metadata, the public API type-checks, and shell completion works."""

import os
import shutil
import subprocess
import sys
import tarfile

import pytest
from conftest import REPO

# Ignored by git and never part of a release (a development checkout has them).
LOCAL_ONLY = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", "*.py[cod]", "*.so", "*.pyd", ".*_cache", ".hypothesis"
)


def source_files(folder):
    """Files under REPO/folder, relative to REPO, as a release would see them."""
    out = set()
    for root, dirs, files in os.walk(os.path.join(REPO, folder)):
        dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
        for name in files:
            if not name.endswith((".pyc", ".so", ".pyd")) and not name.startswith(".mlstm-"):
                out.add(os.path.relpath(os.path.join(root, name), REPO).replace(os.sep, "/"))
    return out


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    """Build the sdist from a copy of the tree (so the checkout gets no egg-info) with the PEP 517
    hook that `python -m build --no-isolation` calls; about 3 s."""
    tmp = tmp_path_factory.mktemp("sdist")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=LOCAL_ONLY)
    code = "import sys, setuptools.build_meta as b; print(b.build_sdist(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp / "dist")], cwd=src, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    path = tmp / "dist" / done.stdout.strip().splitlines()[-1]
    with tarfile.open(path) as tar:
        names = tar.getnames()
        top = names[0].split("/")[0]
        members = {n[len(top) + 1 :] for n in names if n.startswith(top + "/")}
        pkg_info = tar.extractfile(f"{top}/PKG-INFO").read().decode()
    return members, pkg_info


def test_sdist_carries_what_the_tests_need(sdist):
    members, _ = sdist
    needed = source_files("tests") | source_files("fixtures") | source_files("docs")
    needed |= {f for f in source_files("mlstm") if f.endswith((".py", ".c", ".cu", ".cuh", ".m", "py.typed"))}
    needed |= {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "setup.py"}
    assert {"tests/conftest.py", "tests/reference.py", "mlstm/engines/_cpu_lstm.c", "mlstm/py.typed"} <= needed
    assert any(f.startswith("tests/octave/") and f.endswith(".m") for f in needed)
    assert any(f.startswith("fixtures/") and f.endswith(".mat") for f in needed)
    missing = sorted(needed - members)
    assert not missing, missing
    built = sorted(m for m in members if m.endswith((".so", ".pyd", ".pyc")))
    assert not built, built


def test_sdist_metadata_names_the_license(sdist):
    _, pkg_info = sdist
    assert "License-Expression: MIT" in pkg_info
    assert "License-File: LICENSE" in pkg_info
    with open(os.path.join(REPO, "LICENSE")) as fh:
        text = fh.read()
    assert text.startswith("MIT License") and "2026 mlstm developers" in text


def test_public_api_type_checks(tmp_path):
    """mypy --strict over mlstm/__init__.py, api.py and errors.py (pyproject's [tool.mypy])."""
    pytest.importorskip("mypy")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_bash_completion_lists_commands_and_choices():
    """What README's `eval "$(_MLSTM_COMPLETE=bash_source mlstm)"` calls back into."""
    env = dict(os.environ, PYTHONPATH=REPO, _MLSTM_COMPLETE="bash_complete")

    def complete(words, cword):
        done = subprocess.run(
            [sys.executable, "-m", "mlstm"],
            env=dict(env, COMP_WORDS=words, COMP_CWORD=str(cword)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert "plain,doctor" in complete("mlstm do", 1)
    assert {"plain,numpy", "plain,cupy", "plain,auto"} <= set(complete("mlstm run --engine ", 3))
    source = subprocess.run(
        [sys.executable, "-m", "mlstm"], env=dict(env, _MLSTM_COMPLETE="bash_source"), capture_output=True, text=True
    )
    assert "complete -o nosort -F _mlstm_completion mlstm" in source.stdout
