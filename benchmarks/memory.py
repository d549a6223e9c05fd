"""Memory per active series of the consumer's state: ``python -m benchmarks.memory``.

For each series count, a fresh Python process loads the model, scores one
throwaway batch (so that ONNX Runtime's buffers are allocated), and reads its
resident set size (RSS). It then feeds one point of every series through a
``StreamScorer`` in batches of the consumer's size and records each series'
input partition in a ``StateChangelog``, as the consumer does with the state
changelog on, writes every element of the used slots once (so that the parts a
single point leaves untouched are resident too, as for a long-lived series),
and reads the RSS again. The growth divided by the series count
is the cost of one active series. The table's own arrays are counted too, from
their ``nbytes``.

The points are scored by a stand-in model that returns zeros, so that a million
series take seconds rather than minutes. The state kept per series is the same
as with the real model.

Prints a Markdown section; ``--doc PATH`` also writes it into the ``speed``
section of PATH.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import help_description
from benchmarks.common import (
    CONSUMER_BATCH_POINTS,
    PointStream,
    machine_lines,
    markdown_table,
    median,
    print_flush,
    python_command,
    repository_root,
    write_speed_part,
)

SERIES_COUNTS = (100_000, 1_000_000)
# Input partitions the series are spread over in the changelog's bookkeeping.
INPUT_PARTITIONS = 12
TARGET_BYTES_PER_SERIES = 1024
TARGET_MILLION_SERIES_BYTES = 2 * 1024**3


def resident_bytes(field: str = "VmRSS") -> int:
    """Return a size from /proc/self/status: VmRSS (resident) or VmHWM (peak)."""
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not found in /proc/self/status; this needs Linux")


class _ZeroModel:
    """Stands in for the model: the same metadata, zero scores, no model cost."""

    def __init__(self, metadata) -> None:  # type: ignore[no-untyped-def]
        self.metadata = metadata

    def score(self, windows: np.ndarray) -> np.ndarray:
        return np.zeros(windows.shape, dtype=np.float32)


def table_arrays(table) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    """Return the table's numpy arrays, each once, with the channels' arrays."""
    arrays: dict[int, np.ndarray] = {}
    owners = [table] + ([table.channels] if getattr(table, "channels", None) else [])
    for owner in owners:
        for value in vars(owner).values():
            if isinstance(value, np.ndarray):
                arrays[id(value)] = value
    return list(arrays.values())


def table_array_bytes(table) -> int:  # type: ignore[no-untyped-def]
    """Return the bytes of the table's numpy arrays (every slot, used or not)."""
    return sum(array.nbytes for array in table_arrays(table))


def touch(arrays: list[np.ndarray], slots: np.ndarray) -> None:
    """Write every element from the lowest to the highest of ``slots`` once.

    Slices are views, so no temporary copy inflates the RSS.
    """
    first, last = int(slots.min()), int(slots.max()) + 1
    for array in arrays:
        if array.dtype == bool:
            array[first:last] |= False
        else:
            array[first:last] += 0


def measure_child(n_series: int) -> dict[str, float]:
    """Fill a scorer with ``n_series`` series in this process; return the figures."""
    from stream.changelog import StateChangelog
    from stream.detect import scorer_for
    from stream.model import load_model

    model = load_model()
    warm_up = scorer_for(model)
    warm_up.process(
        PointStream(CONSUMER_BATCH_POINTS, prefix="warm-up").next_points(
            CONSUMER_BATCH_POINTS
        )
    )
    del warm_up
    scorer = scorer_for(_ZeroModel(model.metadata))  # type: ignore[arg-type]
    changelog = StateChangelog("changelog", "points", {})
    stream = PointStream(n_series)
    gc.collect()
    before = resident_bytes()

    started = time.perf_counter()
    remaining = n_series
    while remaining > 0:
        size = min(CONSUMER_BATCH_POINTS, remaining)
        points = stream.next_points(size)
        result = scorer.process(points)
        for scored in result.scored:
            changelog.assign(scored.series, hash(scored.series) % INPUT_PARTITIONS)
        remaining -= size
    seconds = time.perf_counter() - started
    del points, result
    # One point per series leaves the channels' arrays unwritten, so their
    # pages are not resident. A long-lived series writes all of its state.
    touch(table_arrays(scorer.table), scorer.table.used_slots())
    gc.collect()
    after = resident_bytes()

    table = scorer.table
    assert len(table) == n_series, f"{len(table)} series held, expected {n_series}"
    return {
        "series": n_series,
        "rss_before": before,
        "rss_after": after,
        "rss_peak": resident_bytes("VmHWM"),
        "table_array_bytes": table_array_bytes(table),
        "capacity": table.capacity,
        "fill_seconds": seconds,
    }


def run_child(n_series: int) -> dict[str, float]:
    """Run :func:`measure_child` in a fresh interpreter, so no earlier run counts."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", "--child", str(n_series)],
        cwd=repository_root(),
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"the measuring process for {n_series} series failed with exit status "
            f"{completed.returncode}: {completed.stderr.strip()[-2000:]}"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def render(args: argparse.Namespace, runs: dict[int, list[dict[str, float]]]) -> str:
    lines = ["### Memory per series", ""]
    lines += machine_lines(python_command("benchmarks.memory", args.argv))
    lines += [
        "",
        f"Median of {args.repeats} fresh processes per series count. RSS growth is "
        "the resident set size after one point of every series, with every "
        "element of their state written once as a long-lived series would, minus "
        "the size before, with the model loaded and warmed up. It covers the "
        "scorer's table (arrays, the series-to-slot dict and the series names, "
        "such as `series-123456`) and the changelog's series-to-partition "
        "bookkeeping. The table doubles up to 65,536 slots and then grows by a "
        "quarter, so its arrays contain more slots than series. Unused slots are "
        "not resident. While the table grows, the old and new arrays coexist, "
        "which the peak RSS (VmHWM) shows.",
        "",
    ]
    rows = []
    verdicts = []
    for n_series, results in runs.items():
        growth = median([r["rss_after"] - r["rss_before"] for r in results])
        total = median([r["rss_after"] for r in results])
        peak = median([r["rss_peak"] for r in results])
        arrays = median([r["table_array_bytes"] for r in results])
        capacity = int(results[0]["capacity"])
        rows.append(
            [
                f"{n_series:,}",
                f"{growth / 2**20:,.0f} MiB",
                f"{growth / n_series:,.0f}",
                f"{arrays / 2**20:,.0f} MiB ({capacity:,} slots)",
                f"{arrays / capacity:,.0f}",
                f"{arrays / n_series:,.0f}",
                f"{total / 2**20:,.0f} MiB",
                f"{peak / 2**20:,.0f} MiB",
            ]
        )
        verdicts.append((n_series, growth / n_series, peak))
    lines.append(
        markdown_table(
            [
                "series",
                "RSS growth",
                "bytes/series (RSS)",
                "table arrays",
                "array bytes/slot",
                "array bytes/series",
                "process RSS",
                "peak RSS",
            ],
            rows,
        )
    )
    worst = max(per_series for _, per_series, _ in verdicts)
    lines += [
        "",
        f"Target: <= {TARGET_BYTES_PER_SERIES:,} bytes per active series: "
        f"{'met' if worst <= TARGET_BYTES_PER_SERIES else 'missed'} "
        f"(at most {worst:,.0f} bytes, "
        f"{worst / TARGET_BYTES_PER_SERIES:.2f} of the target).",
    ]
    million = [total for n, _, total in verdicts if n == 1_000_000]
    if million:
        lines.append(
            f"Target: 1,000,000 idle series in 2 GiB: "
            f"{'met' if million[0] <= TARGET_MILLION_SERIES_BYTES else 'missed'} "
            f"(the whole process peaked at {million[0] / 2**30:.2f} GiB, "
            f"{million[0] / TARGET_MILLION_SERIES_BYTES:.2f} of the target)."
        )
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.memory", description=help_description(__doc__)
    )
    parser.add_argument(
        "--series",
        type=lambda text: [int(part) for part in text.split(",")],
        default=list(SERIES_COUNTS),
        help="comma-separated series counts (default 100000,1000000)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="processes per series count (default 3)"
    )
    parser.add_argument(
        "--doc",
        type=Path,
        default=None,
        help="also write the section into this Markdown file",
    )
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.child is not None:
        print(json.dumps(measure_child(args.child)))
        return 0
    runs: dict[int, list[dict[str, float]]] = {}
    for repeat in range(args.repeats):
        for n_series in args.series:
            print_flush(f"repeat {repeat + 1} of {args.repeats}: {n_series:,} series")
            runs.setdefault(n_series, []).append(run_child(n_series))
    section = render(args, runs)
    print(section)
    if args.doc is not None:
        write_speed_part(args.doc, "memory", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
