"""The benchmark commands' --help text."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import help_description

# The NAB subset that every clone has, so the options are checked after it.
SUBSET_CORPUS = Path(__file__).resolve().parent / "data" / "nab"

COMMANDS = (
    "benchmarks.nab",
    "benchmarks.nab.channels",
    "benchmarks.nab.contributions",
    "benchmarks.nab.ensemble",
    "benchmarks.nab.finetune_loco",
    "benchmarks.nab.variants",
    "benchmarks.kafka_e2e",
    "benchmarks.crash_recovery",
    "benchmarks.memory",
    "benchmarks.throughput",
)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ("``python -m benchmarks.x``: score the files.\n\nMore.", "Score the files."),
        ("Speed of the scorer: ``python -m benchmarks.y``.\n", "Speed of the scorer."),
        ("Averages ``(batch, 16)`` inputs.", "Averages (batch, 16) inputs."),
    ],
)
def test_help_description_drops_command_and_markup(doc, expected):
    assert help_description(doc) == expected


@pytest.mark.parametrize("module", COMMANDS)
def test_help_shows_plain_description(module):
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.startswith("usage: python -m " + module)
    assert "``" not in result.stdout
    description = result.stdout.split("\n\n")[1].strip()
    assert description[0].isupper()
    assert description.endswith((".", "?"))


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--stride", "0"], "--stride must be between 1 and the window size 16, got 0"),
        (["--stride", "17"], "--stride must be between 1 and the window size 16"),
        (["--lag-points", "-1"], "--lag-points must be 0 or more, got -1"),
        (["--workers", "0"], "--workers must be at least 1, got 0"),
    ],
)
def test_nab_rejects_bad_options(option, message):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.nab",
            "--doc",
            "-",
            "--corpus",
            str(SUBSET_CORPUS),
            *option,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
