"""Helpers shared by the speed benchmarks: machine facts, synthetic points, tables."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stream.points import Point
from stream.settings import Settings

# The most points the consumer fetches and scores together, by default.
CONSUMER_BATCH_POINTS: int = Settings.model_fields["max_batch_points"].default

# Timestamps of the synthetic series start here (2020-01-01 UTC), one point a minute.
START_EPOCH_SECONDS = 1_577_836_800.0
STEP_SECONDS = 60.0


def cpu_model() -> str:
    """Return the first ``model name`` of /proc/cpuinfo, or the platform's name."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> int:
    """Return how many CPUs this process may run on (what ``nproc`` prints)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


def git_commit() -> str:
    """Return the short id of the checked-out commit, or "unknown" outside git."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=repository_root(),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return completed.stdout.strip() or "unknown"


def machine_lines(command: str) -> list[str]:
    """Return the Markdown lines naming the command, the code, the machine and versions."""
    import onnxruntime

    return [
        f"Command: `{command}` (working tree at commit {git_commit()})",
        "",
        f"Machine: {usable_cpus()} CPUs (nproc), {cpu_model()}, "
        f"Python {platform.python_version()}, ONNX Runtime {onnxruntime.__version__}, "
        f"NumPy {np.__version__}. Load average (1 / 5 / 15 min) at the start: "
        f"{load_average()}.",
    ]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def format_rate(value: float) -> str:
    """Format a rate with a thousands separator and no decimals above 100."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def format_ratio(value: float) -> str:
    return f"{value:.2f}"


class PointStream:
    """An endless stream of points that visits ``n_series`` series in turn.

    Point k belongs to series ``k % n_series`` and is that series'
    ``k // n_series``-th point, one minute after its previous one, so every
    series stays in timestamp order. Values are a daily sine with a phase and a
    level per series plus Gaussian noise.
    """

    def __init__(self, n_series: int, seed: int = 0, prefix: str = "series") -> None:
        self.n_series = n_series
        self.names = [f"{prefix}-{index}" for index in range(n_series)]
        self._rng = np.random.default_rng(seed)
        self._phase = self._rng.uniform(0, 2 * np.pi, n_series)
        self._level = self._rng.uniform(0, 100, n_series)
        self.position = 0

    def next_arrays(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the series indices, timestamps and values of the next ``size`` points."""
        k = np.arange(self.position, self.position + size)
        self.position += size
        series = k % self.n_series
        step = k // self.n_series
        timestamps = START_EPOCH_SECONDS + step * STEP_SECONDS
        values = (
            self._level[series]
            + 10 * np.sin(2 * np.pi * step / 1440.0 + self._phase[series])
            + self._rng.normal(0.0, 1.0, size)
        )
        return series, timestamps, values

    def next_points(self, size: int) -> list[Point]:
        series, timestamps, values = self.next_arrays(size)
        names = self.names
        return [
            Point(names[s], t, v)
            for s, t, v in zip(
                series.tolist(), timestamps.tolist(), values.tolist(), strict=True
            )
        ]


def repository_root() -> Path:
    return Path(__file__).resolve().parent.parent


def python_command(module: str, argv: Sequence[str]) -> str:
    """Return the command line that reproduces this run, for the table header."""
    arguments = " ".join(argv)
    return f"python -m {module}" + (f" {arguments}" if arguments else "")


def print_flush(*args: object) -> None:
    """Print a progress message to stderr, so stdout carries only the Markdown."""
    print(*args, file=sys.stderr, flush=True)


def write_speed_part(document: Path, part: str, body: str) -> None:
    """Write ``body`` as part ``part`` of the ``speed`` section of ``document``.

    Each benchmark owns one part, between ``<!-- speed-PART:start -->`` and
    ``<!-- speed-PART:end -->`` inside the section, so that rerunning one
    benchmark keeps the others' results and the text written by hand.
    """
    from benchmarks.nab.report import replace_section

    start, end = "<!-- speed:start -->", "<!-- speed:end -->"
    text = document.read_text() if document.exists() else ""
    section = ""
    if start in text and end in text:
        section = text.split(start, 1)[1].split(end, 1)[0].strip("\n")
    part_start, part_end = f"<!-- speed-{part}:start -->", f"<!-- speed-{part}:end -->"
    block = f"{part_start}\n{body.rstrip()}\n{part_end}"
    if part_start in section and part_end in section:
        head, rest = section.split(part_start, 1)
        section = head + block + rest.split(part_end, 1)[1]
    else:
        section = (section.rstrip() + "\n\n" + block).lstrip("\n")
    replace_section(document, "speed", section)
