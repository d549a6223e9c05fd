"""``python -m training.train`` in an environment where torch cannot be imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COMMAND = [sys.executable, "-m", "training.train"]


@pytest.fixture
def env_without_torch(tmp_path) -> dict[str, str]:
    """Return an environment whose first PYTHONPATH entry has a failing torch.py.

    PYTHONPATH entries come before site-packages on sys.path, so the stub hides
    an installed torch and raises what Python raises when torch is missing.
    """
    stub_dir = tmp_path / "no_torch"
    stub_dir.mkdir()
    (stub_dir / "torch.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n"
    )
    env = dict(os.environ)
    paths = [str(stub_dir), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
    probe = subprocess.run(
        [sys.executable, "-c", "import torch"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode != 0, "the torch.py stub did not hide torch"
    return env


def run_train(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_without_torch(env_without_torch):
    result = run_train(env_without_torch, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m training.train")
    assert "--output-dir" in result.stdout
    assert "--epochs" in result.stdout
    assert result.stderr == ""


def test_run_without_torch_names_extra(env_without_torch, tmp_path):
    output_dir = tmp_path / "model"
    result = run_train(env_without_torch, "--output-dir", str(output_dir))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("python -m training.train: error: ")
    assert "torch is missing" in result.stderr
    assert "pip install -e '.[train]'" in result.stderr
    assert not output_dir.exists()


def test_invalid_option_without_torch(env_without_torch):
    result = run_train(env_without_torch, "--epochs", "0")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--epochs must be at least 1, got 0" in result.stderr
