"""Coverage-guided fuzzing of the message decoder with atheris (libFuzzer).

Command (needs the ``fuzz`` extra, ``pip install -e '.[fuzz]'``)::

    python -m benchmarks.fuzz_decoder --seconds 60

Feeds ``stream.decode.decode_point`` with mutated keys and values, seeded with
valid points and odd spellings (NaN, Infinity, huge numbers, ISO dates, deep
JSON). Every input must decode to a point or raise ``InvalidPointError`` with a
known reason code. A decoded point must have a non-empty series id that encodes
to UTF-8, a finite timestamp in years 1 to 9999 and a finite value within
``MAX_ABS_VALUE``. Any other exception or a failed check stops the run with
libFuzzer's crash report and writes the input to ``crash-<sha1>`` in the
working directory.

``--corpus DIR`` keeps the corpus between runs (default: a temporary folder).
Arguments after ``--`` go to libFuzzer, for example ``-- -jobs=2``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["stream"]):
    import stream.decode
    import stream.points
    from stream.decode import MAX_SERIES_CHARS, decode_point
    from stream.errors import InvalidPointError
    from stream.points import (
        MAX_ABS_VALUE,
        MAX_EPOCH_SECONDS,
        MIN_EPOCH_SECONDS,
        format_timestamp,
    )

MAX_PAYLOAD_BYTES = 4096

KNOWN_REASONS = {
    value
    for module in (stream.decode, stream.points)
    for name, value in vars(module).items()
    if name.startswith("REASON_")
}

SEEDS = [
    b'{"timestamp": 1397114100, "value": 1.5}',
    b'{"timestamp": "2014-04-10 07:15:00", "value": "12.5"}',
    b'{"timestamp": "2014-04-10T07:15:00+14:00", "value": -0.0, "series": "s"}',
    b'{"timestamp": 1e11, "value": NaN}',
    b'{"timestamp": 1, "value": Infinity, "series": "\\ud800"}',
    b'{"timestamp": 1' + b"0" * 400 + b', "value": 1e300}',
    b'{"timestamp": [[[[1]]]], "value": {"value": 1}}',
    b'{"timestamp": "9999-12-31T23:59:59.999999", "value": 1e-320}',
]

# libFuzzer dictionary entries: tokens that mutations insert whole.
DICTIONARY = [
    '"timestamp"',
    '"value"',
    '"series"',
    "NaN",
    "-NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "1e300",
    "true",
    "null",
    '"nan"',
    '"inf"',
    "T00:00:00Z",
    "+14:00",
    "\\ud800",
    "\\u0000",
]


def split_input(data: bytes) -> tuple[bytes | None, bytes | None]:
    """Split a fuzzer input into a message key and value.

    Byte 0 modulo 4 selects the key: 0 none, 1 empty, otherwise byte 1 is the
    key's length and the key follows. When byte 0 is divisible by 16 the value
    is a tombstone, and otherwise the rest of the input is the value.
    """
    if not data:
        return None, None
    mode, rest = data[0], data[1:]
    if mode % 4 == 0:
        key = None
    elif mode % 4 == 1:
        key = b""
    else:
        length = rest[0] if rest else 0
        key, rest = rest[1 : 1 + length], rest[1 + length :]
    value = None if mode % 16 == 0 else rest
    return key, value


def check_one_input(data: bytes) -> None:
    """Decode one fuzzer input as a message and check the decoder's contract."""
    key, value = split_input(data)
    try:
        point = decode_point(key, value, MAX_PAYLOAD_BYTES)
    except InvalidPointError as exc:
        if exc.reason not in KNOWN_REASONS:
            raise AssertionError(f"unknown reason code {exc.reason!r}") from exc
        return
    if not 0 < len(point.series) <= MAX_SERIES_CHARS:
        raise AssertionError(f"series id of {len(point.series)} characters")
    point.series.encode("utf-8")
    if not MIN_EPOCH_SECONDS <= point.timestamp <= MAX_EPOCH_SECONDS:
        raise AssertionError(f"timestamp {point.timestamp!r} out of range")
    if not (math.isfinite(point.value) and abs(point.value) <= MAX_ABS_VALUE):
        raise AssertionError(f"value {point.value!r} out of range")
    format_timestamp(point.timestamp)


def write_seed_corpus(directory: Path) -> None:
    """Write each seed twice: with the key "sensor-1" and with an empty key."""
    directory.mkdir(parents=True, exist_ok=True)
    key = b"sensor-1"
    for index, seed in enumerate(SEEDS):
        (directory / f"seed-{index}-key").write_bytes(bytes([2, len(key)]) + key + seed)
        (directory / f"seed-{index}-empty-key").write_bytes(b"\x01" + seed)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        description="Fuzz stream.decode.decode_point with atheris.",
        epilog="Arguments after -- are passed to libFuzzer.",
    )
    parser.add_argument(
        "--seconds", type=int, default=60, help="run time in seconds (default 60)"
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        help="corpus folder kept between runs (default: a temporary folder)",
    )
    if "--" in argv:
        split = argv.index("--")
        own, extra = argv[:split], argv[split + 1 :]
    else:
        own, extra = argv, []
    args = parser.parse_args(own)
    if args.seconds < 1:
        parser.error(f"--seconds {args.seconds} must be at least 1")
    return args, extra


def main(argv: list[str] | None = None) -> None:
    args, extra = parse_args(list(sys.argv[1:] if argv is None else argv))
    work = Path(tempfile.mkdtemp(prefix="fuzz-decoder-"))
    corpus = args.corpus or work / "corpus"
    if not corpus.exists() or not any(corpus.iterdir()):
        write_seed_corpus(corpus)
    dictionary = work / "decoder.dict"
    dictionary.write_text("".join(f"{json.dumps(token)}\n" for token in DICTIONARY))
    print(
        f"fuzzing decode_point for {args.seconds} s, corpus {corpus}",
        file=sys.stderr,
        flush=True,
    )
    libfuzzer_args = [
        sys.argv[0],
        f"-max_total_time={args.seconds}",
        f"-dict={dictionary}",
        "-print_final_stats=1",
        *extra,
        str(corpus),
    ]
    atheris.Setup(libfuzzer_args, check_one_input)
    # libFuzzer exits the process when the time is up or an input fails.
    atheris.Fuzz()


if __name__ == "__main__":
    main()
