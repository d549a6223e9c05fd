"""Property-based tests of the decoder and the streaming scorer with hostile input.

The decoder gets arbitrary bytes, every spelling of NaN and infinity, huge and
tiny numbers, deep or enormous JSON, wrong types, bad keys and tombstones. The
scorer gets series that mix valid points with non-finite values, duplicates and
out-of-order timestamps, split into batches at arbitrary places.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stream.decode
import stream.points
from stream.decode import MAX_SERIES_CHARS, decode_point
from stream.detect import scorer_for
from stream.errors import InvalidPointError
from stream.model import WindowModel, load_model
from stream.points import (
    MAX_ABS_VALUE,
    MAX_EPOCH_SECONDS,
    MIN_EPOCH_SECONDS,
    Point,
    format_timestamp,
)
from stream.state import BatchResult, StreamScorer

WINDOW = 16
MAX_PAYLOAD_BYTES = 4096

# Every reason code that the decoder and the scorer may attach to a rejection.
KNOWN_REASONS = {
    value
    for module in (stream.decode, stream.points)
    for name, value in vars(module).items()
    if name.startswith("REASON_")
}

# CI runs 40 examples per property; ANOMALYBERT_PROPERTY_EXAMPLES=1000 searches
# longer.
PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("ANOMALYBERT_PROPERTY_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def write_sigmoid_model(directory: Path, calibration: dict | None = None) -> Path:
    """Write a model whose window scores are ``sigmoid(0.8 * input - 1)``.

    The scores lie in [0, 1] for every finite input, like the real model's, and
    follow the inputs, so a non-finite model input shows up as a NaN score.
    """
    import hashlib

    import onnx
    from onnx import TensorProto, helper

    gain = helper.make_tensor("gain", TensorProto.FLOAT, [1], [0.8])
    bias = helper.make_tensor("bias", TensorProto.FLOAT, [1], [-1.0])
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["input", "gain"], ["scaled"]),
            helper.make_node("Add", ["scaled", "bias"], ["shifted"]),
            helper.make_node("Sigmoid", ["shifted"], ["scores"]),
        ],
        "sigmoid_scores",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", WINDOW])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", WINDOW])],
        initializer=[gain, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    directory.mkdir(parents=True, exist_ok=True)
    onnx_path = directory / "model.onnx"
    onnx.save(model, onnx_path)
    sha = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    metadata = {
        "format_version": 1,
        "model_version": "sigmoid+" + sha[:8],
        "model_sha256": sha,
        "onnx": {"file": "model.onnx", "input": "input", "output": "scores"},
        "config": {"window_size": WINDOW},
        "normalisation": {
            "method": "window_median_ew_mad_asinh",
            "horizon_points": 50,
            "eps_rel": 1e-6,
            "eps_abs": 1e-9,
        },
        "alert": {
            "threshold": 0.5,
            "lag_points": 3,
            "calibration": calibration or {"method": "none"},
        },
    }
    meta_path = directory / "model.onnx.json"
    meta_path.write_text(json.dumps(metadata))
    return meta_path


@pytest.fixture(scope="module")
def sigmoid_model(tmp_path_factory) -> WindowModel:
    return load_model(write_sigmoid_model(tmp_path_factory.mktemp("sigmoid")))


@pytest.fixture(scope="module")
def calibrated_model(tmp_path_factory) -> WindowModel:
    calibration = {
        "method": "likelihood",
        "horizon_points": 40,
        "short_points": 4,
        "warmup_points": 5,
    }
    return load_model(
        write_sigmoid_model(tmp_path_factory.mktemp("calibrated"), calibration)
    )


# --- Decoder -----------------------------------------------------------------

# JSON number and constant spellings, including the non-standard ones that
# Python's json module reads (NaN, Infinity) and ones it rejects (-NaN, nan).
NUMBER_TOKENS = [
    "NaN",
    "-NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "+Infinity",
    "inf",
    "1e999",
    "-1e999",
    "1e-999",
    "5e-324",
    "1.7976931348623157e308",
    "-0",
    "-0.0",
    "0e0",
    "1" + "0" * 400,
    "-1" + "0" * 400,
    "1" + "0" * 5000,
    "0." + "0" * 400 + "1",
    "01",
    ".5",
    "1.",
    "0x10",
    "1e",
    "253402300799",
    "253402300800",
    "-62135596800",
    "-62135596801",
    "1e11",
    "-1e11",
]
STRING_TOKENS = [
    "nan",
    "NaN",
    "-nan",
    "inf",
    "-inf",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1e999",
    "1" + "0" * 400,
    " 12.5 ",
    "1_000",
    "١٢٣",
    "",
    " ",
    "true",
    "2014-04-10 07:15:00",
    "2014-04-10T07:15:00Z",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59.999999",
    "10000-01-01",
    "2014-02-30",
    "2014-04-10T25:00",
    "\u0000",
    "\ud800",
]
OTHER_TOKENS = ["true", "false", "null", "[]", "{}", "[1]", '{"value": 1}']

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.text(max_size=8), children, max_size=3),
    ),
    max_leaves=8,
)


@st.composite
def field_token(draw) -> str:
    """A JSON text for one field: a special spelling or any JSON value."""
    kind = draw(st.sampled_from(["number", "string", "other", "json", "float"]))
    if kind == "number":
        return draw(st.sampled_from(NUMBER_TOKENS))
    if kind == "string":
        return json.dumps(draw(st.sampled_from(STRING_TOKENS)))
    if kind == "other":
        return draw(st.sampled_from(OTHER_TOKENS))
    if kind == "float":
        # repr spells 1e+300, inf and nan in Python's way, not JSON's.
        return repr(draw(st.floats()))
    return json.dumps(draw(json_values))


@st.composite
def message_values(draw) -> bytes | None:
    """A message value: a tombstone, raw bytes, or an object with odd fields."""
    kind = draw(st.sampled_from(["tombstone", "bytes", "object", "object", "object"]))
    if kind == "tombstone":
        return None
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    names = draw(
        st.lists(
            st.sampled_from(["timestamp", "value", "series", "extra", "Value"]),
            max_size=6,
        )
    )
    fields = [f"{json.dumps(name)}: {draw(field_token())}" for name in names]
    text = "{" + ", ".join(fields) + "}"
    text = draw(st.sampled_from(["", " ", "\n"])) + text
    if draw(st.booleans()):
        # Cut the text at an arbitrary place, as a partial write would.
        text = text[: draw(st.integers(0, len(text)))]
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "latin-1"]))
    return text.encode(encoding, "surrogatepass" if encoding == "utf-8" else "replace")


message_keys = st.one_of(
    st.none(),
    st.just(b""),
    st.text(max_size=20).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.binary(max_size=20),
    st.just("k" * (MAX_SERIES_CHARS + 1)).map(str.encode),
    st.just(b"\xff\xfe"),
)


def check_decoded(key: bytes | None, value: bytes | None) -> Point | None:
    """Decode one message and check the decoder's contract; return the point."""
    try:
        point = decode_point(key, value, MAX_PAYLOAD_BYTES)
    except InvalidPointError as exc:
        assert exc.reason in KNOWN_REASONS, exc.reason
        assert str(exc)
        return None
    assert isinstance(point.series, str)
    assert 0 < len(point.series) <= MAX_SERIES_CHARS
    # The consumer encodes the series id as the key of the anomaly record.
    point.series.encode("utf-8")
    assert math.isfinite(point.timestamp)
    assert MIN_EPOCH_SECONDS <= point.timestamp <= MAX_EPOCH_SECONDS
    assert math.isfinite(point.value)
    assert abs(point.value) <= MAX_ABS_VALUE
    format_timestamp(point.timestamp)
    return point


@PROPERTY_SETTINGS
@given(key=message_keys, value=message_values())
def test_decode_raises_only_known_reasons(key, value):
    check_decoded(key, value)


@PROPERTY_SETTINGS
@given(key=st.binary(max_size=40) | st.none(), value=st.binary(max_size=600))
def test_decode_arbitrary_bytes(key, value):
    check_decoded(key, value)


@PROPERTY_SETTINGS
@given(
    timestamp=field_token(),
    value=field_token(),
    series=st.one_of(st.none(), field_token()),
)
def test_decode_point_fields(timestamp, value, series):
    text = f'{{"timestamp": {timestamp}, "value": {value}'
    if series is not None:
        text += f', "series": {series}'
    text += "}"
    check_decoded(b"", text.encode("utf-8", "surrogatepass"))
    check_decoded(b"sensor", text.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize(
    "key, value, reason",
    [
        (b"s", b'{"timestamp": 1, "value": NaN}', "non_finite_value"),
        (b"s", b'{"timestamp": 1, "value": -NaN}', "invalid_json"),
        (b"s", b'{"timestamp": 1, "value": Infinity}', "non_finite_value"),
        (b"s", b'{"timestamp": 1, "value": -Infinity}', "non_finite_value"),
        (b"s", b'{"timestamp": 1, "value": 1e999}', "non_finite_value"),
        (b"s", b'{"timestamp": 1, "value": "nan"}', "non_finite_value"),
        (b"s", b'{"timestamp": 1, "value": "-Infinity"}', "non_finite_value"),
        (b"s", b'{"timestamp": 1, "value": 1e301}', "value_out_of_range"),
        (
            b"s",
            b'{"timestamp": 1, "value": -1.7976931348623157e308}',
            "value_out_of_range",
        ),
        (b"s", b'{"timestamp": NaN, "value": 1}', "non_finite_value"),
        (b"s", b'{"timestamp": "nan", "value": 1}', "invalid_timestamp"),
        (b"s", b'{"timestamp": 1e999, "value": 1}', "invalid_timestamp"),
        (
            b"s",
            b'{"timestamp": 1' + b"0" * 400 + b', "value": 1}',
            "timestamp_out_of_range",
        ),
        (
            b"s",
            b'{"timestamp": 1' + b"0" * 5000 + b', "value": 1}',
            "payload_too_large",
        ),
        (b"s", b'{"timestamp": 1e12, "value": 1}', "timestamp_out_of_range"),
        (b"s", b'{"timestamp": -1e12, "value": 1}', "timestamp_out_of_range"),
        (
            b"s",
            b'{"timestamp": "0001-01-01T00:00:00+14:00", "value": 1}',
            "timestamp_out_of_range",
        ),
        (b"s", b'{"timestamp": "10000-01-01", "value": 1}', "invalid_timestamp"),
        (b"s", b'{"timestamp": true, "value": 1}', "invalid_timestamp"),
        (b"s", b'{"timestamp": 1, "value": [1]}', "invalid_value"),
        (b"s", b'{"timestamp": 1, "value": null}', "invalid_value"),
        (b"", b'{"timestamp": 1, "value": 1, "series": "\\ud800"}', "invalid_series"),
        (b"", b'{"timestamp": 1, "value": 1, "series": ""}', "invalid_series"),
        (b"", b'{"timestamp": 1, "value": 1, "series": 5}', "invalid_series"),
        (b"", b'{"timestamp": 1, "value": 1}', "missing_series"),
        (b"s", b'[{"timestamp": 1, "value": 1}]', "not_an_object"),
        (b"s", b'"\xff"', "invalid_encoding"),
        (b"s", b"", "invalid_json"),
    ],
)
def test_decode_special_spellings(key, value, reason):
    with pytest.raises(InvalidPointError) as raised:
        decode_point(key, value, MAX_PAYLOAD_BYTES)
    assert raised.value.reason == reason


@pytest.mark.parametrize(
    "value",
    [
        b"[" * 100_000,
        b'{"a": ' * 50_000,
        b'{"timestamp": 1, "value": ' + b"[" * 990 + b"]" * 990 + b"}",
        b'{"timestamp": ' + b"[" * 990 + b"]" * 990 + b', "value": 1}',
        b'{"timestamp": 1, "value": [' + b"1, " * 300_000 + b"1]}",
        b'{"timestamp": 1, "value": "' + b"x" * 1_000_000 + b'"}',
    ],
    ids=[
        "deep-list",
        "deep-object",
        "deep-value",
        "deep-timestamp",
        "huge-list",
        "huge-string",
    ],
)
def test_decode_deep_or_enormous_json(value):
    with pytest.raises(InvalidPointError) as raised:
        decode_point(b"s", value, max_payload_bytes=10_000_000)
    assert raised.value.reason in KNOWN_REASONS
    # Messages end up in logs and dead-letter headers, so they stay short.
    assert len(str(raised.value)) < 400
    if len(value) > MAX_PAYLOAD_BYTES:
        with pytest.raises(InvalidPointError) as raised:
            decode_point(b"s", value, MAX_PAYLOAD_BYTES)
        assert raised.value.reason == "payload_too_large"


def test_decode_tombstone_and_bad_keys():
    good = b'{"timestamp": 1, "value": 2}'
    cases = [
        (b"s", None, "tombstone"),
        (None, None, "tombstone"),
        (b"\xff\xfe", good, "invalid_encoding"),
        (b"\xed\xa0\x80", good, "invalid_encoding"),  # an encoded lone surrogate
        (b"", good, "missing_series"),
        (None, good, "missing_series"),
        (b"k" * (MAX_SERIES_CHARS + 1), good, "invalid_series"),
    ]
    for key, value, reason in cases:
        with pytest.raises(InvalidPointError) as raised:
            decode_point(key, value, MAX_PAYLOAD_BYTES)
        assert raised.value.reason == reason, (key, value)


# --- Scorer ------------------------------------------------------------------

SERIES_NAMES = ["a", "b", "c", "d", "e"]

# Finite values over many magnitudes; the largest stay within MAX_ABS_VALUE.
finite_values = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.floats(min_value=-MAX_ABS_VALUE, max_value=MAX_ABS_VALUE, allow_nan=False),
    st.sampled_from(
        [0.0, -0.0, 5e-324, -5e-324, 1e-300, MAX_ABS_VALUE, -MAX_ABS_VALUE]
    ),
)
# Seconds to the next point of a series: regular steps, tiny steps and gaps of
# years, as long as the timestamps stay in the range the decoder accepts.
time_steps = st.one_of(
    st.sampled_from([300.0, 60.0, 1.0]),
    st.floats(min_value=1e-6, max_value=1e9, allow_nan=False),
)
invalid_kinds = st.sampled_from(
    ["nan", "inf", "-inf", "huge", "duplicate", "earlier", "far-past"]
)


@dataclass(frozen=True)
class Stream:
    """Points in arrival order, which of them are invalid, and the batch cuts."""

    points: list[Point]
    invalid: frozenset[int]
    cuts: list[int]

    def batches(self, points: list[Point] | None = None) -> list[list[Point]]:
        points = self.points if points is None else points
        edges = [0, *sorted(c for c in self.cuts if 0 < c < len(points)), len(points)]
        return [points[a:b] for a, b in zip(edges, edges[1:], strict=False) if b > a]

    def valid_points(self) -> list[Point]:
        return [p for i, p in enumerate(self.points) if i not in self.invalid]


@st.composite
def streams(draw, max_points: int = 120, invalid: bool = True) -> Stream:
    """Several series, interleaved, with invalid points injected at random places."""
    series_count = draw(st.integers(1, len(SERIES_NAMES)))
    start = draw(st.sampled_from([0.0, 1.4e9, MIN_EPOCH_SECONDS, 2.5e11]))
    last_time: dict[str, float] = {}
    points: list[Point] = []
    bad: set[int] = set()
    for _ in range(draw(st.integers(0, max_points))):
        series = SERIES_NAMES[draw(st.integers(0, series_count - 1))]
        previous = last_time.get(series)
        if invalid and previous is not None and draw(st.integers(0, 4)) == 0:
            kind = draw(invalid_kinds)
            value = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}.get(kind, 1.0)
            timestamp = previous + 1.0
            if kind == "huge":
                value = draw(st.sampled_from([1e301, -1e308, 1.7976931348623157e308]))
            elif kind == "duplicate":
                timestamp = previous
            elif kind == "earlier":
                delta = draw(st.floats(1e-3, 1e6))
                timestamp = max(MIN_EPOCH_SECONDS, previous - delta)
            elif kind == "far-past":
                timestamp = MIN_EPOCH_SECONDS
            if (
                timestamp > previous
                and math.isfinite(value)
                and abs(value) <= MAX_ABS_VALUE
            ):
                continue
            bad.add(len(points))
            points.append(Point(series, timestamp, value))
            continue
        timestamp = start if previous is None else previous + draw(time_steps)
        # A tiny step can vanish in rounding next to a large timestamp.
        if timestamp > MAX_EPOCH_SECONDS or (
            previous is not None and timestamp <= previous
        ):
            continue
        last_time[series] = timestamp
        points.append(Point(series, timestamp, draw(finite_values)))
    cuts = draw(st.lists(st.integers(1, max(1, len(points))), max_size=6))
    return Stream(points, frozenset(bad), cuts)


def run_batches(
    scorer: StreamScorer, batches: list[list[Point]]
) -> tuple[list[BatchResult], list[Point]]:
    results = []
    for now, batch in enumerate(batches):
        results.append(scorer.process(batch, float(now)))
    return results, [p for batch in batches for p in batch]


def scored_by_series(results: list[BatchResult]) -> dict[str, list[tuple]]:
    table: dict[str, list[tuple]] = defaultdict(list)
    for result in results:
        for p in result.scored:
            table[p.series].append(
                (p.timestamp, p.value, p.window_score, p.score, p.is_anomaly)
            )
    return table


def assert_scores_in_range(results: list[BatchResult]) -> None:
    for result in results:
        for p in result.scored:
            assert math.isfinite(p.window_score), p
            assert math.isfinite(p.score), p
            assert 0.0 <= p.window_score <= 1.0, p
            assert 0.0 <= p.score <= 1.0, p


@pytest.mark.parametrize("model_name", ["sigmoid_model", "calibrated_model"])
@PROPERTY_SETTINGS
@given(stream_=streams())
def test_scorer_outputs_finite_scores(request, model_name, stream_):
    scorer = scorer_for(request.getfixturevalue(model_name))
    results = []
    for now, batch in enumerate(stream_.batches()):
        results.append(scorer.process(batch, float(now)))
        if results[-1].windows_scored:
            # The sigmoid hides infinite model inputs, which the real model
            # would turn into NaN, so the inputs are checked too.
            assert np.isfinite(scorer._inputs).all()
    assert_scores_in_range(results)
    table = scorer.table
    slots = table.used_slots()
    assert np.isfinite(table.scale[slots]).all()
    assert np.isfinite(table.sums[slots]).all()


@PROPERTY_SETTINGS
@given(stream_=streams())
def test_scorer_counts_add_up(sigmoid_model, stream_):
    scorer = scorer_for(sigmoid_model)
    lag = scorer.settings.lag_points
    accepted_per_series: dict[str, int] = defaultdict(int)
    scored_total = 0
    for batch in stream_.batches():
        result = scorer.process(batch)
        scored_total += len(result.scored)
        rejected = [r.input_index for r in result.rejected]
        assert len(set(rejected)) == len(rejected)
        assert all(0 <= i < len(batch) for i in rejected)
        assert result.windows_scored + len(rejected) == len(batch)
        assert all(r.reason in KNOWN_REASONS for r in result.rejected)
        accepted = set(range(len(batch))) - set(rejected)
        assert {p.input_index for p in result.scored} <= accepted
        for index in accepted:
            accepted_per_series[batch[index].series] += 1
    # With lag d, every point but the last d of each series has its score.
    assert scored_total == sum(max(0, n - lag) for n in accepted_per_series.values())
    assert scorer.active_series == len(accepted_per_series)


@pytest.mark.parametrize("model_name", ["sigmoid_model", "calibrated_model"])
@PROPERTY_SETTINGS
@given(stream_=streams())
def test_invalid_points_do_not_poison(request, model_name, stream_):
    model = request.getfixturevalue(model_name)
    mixed_scorer = scorer_for(model)
    mixed_results, mixed_points = run_batches(mixed_scorer, stream_.batches())
    rejected = {
        offset + r.input_index
        for offset, result in zip(
            np.cumsum([0] + [len(b) for b in stream_.batches()]),
            mixed_results,
            strict=False,
        )
        for r in result.rejected
    }
    assert rejected == set(stream_.invalid)

    # The same valid points alone, in one batch: the batch cuts and the invalid
    # points must change nothing.
    clean_scorer = scorer_for(model)
    clean_results, _ = run_batches(clean_scorer, [stream_.valid_points()])
    mixed = scored_by_series(mixed_results)
    clean = scored_by_series(clean_results)
    assert mixed.keys() == clean.keys()
    for series, rows in clean.items():
        other = mixed[series]
        assert len(other) == len(rows), series
        np.testing.assert_array_equal(
            [r[0] for r in other], [r[0] for r in rows], err_msg=series
        )
        np.testing.assert_array_equal(
            [r[1] for r in other], [r[1] for r in rows], err_msg=series
        )
        np.testing.assert_allclose(
            [r[2:4] for r in other], [r[2:4] for r in rows], rtol=1e-6, atol=1e-7
        )


@PROPERTY_SETTINGS
@given(
    stream_=streams(max_points=150, invalid=False),
    max_series=st.integers(1, 4),
)
def test_scorer_state_stays_bounded(sigmoid_model, stream_, max_series):
    scorer = scorer_for(sigmoid_model, max_series=max_series)
    table = scorer.table
    largest_batch = 0
    for now, batch in enumerate(stream_.batches()):
        before_evicted = scorer.evicted_total
        before = set(table.slot_of)
        scorer.process(batch, float(now))
        batch_series = {p.series for p in batch}
        largest_batch = max(largest_batch, len(batch_series))
        # The cap yields only to series that all have points in one batch.
        assert scorer.active_series <= max(max_series, largest_batch)
        assert batch_series <= set(table.slot_of)
        # A series can be evicted and come back later in the same batch, so the
        # evictions are at least the series that disappeared.
        assert scorer.evicted_total - before_evicted >= len(before - set(table.slot_of))
        stored = [s for s in table.series_of if s is not None]
        assert sorted(stored) == sorted(table.slot_of)
        assert table.capacity <= max(1024, 2 * scorer.active_series)


def test_rejected_point_leaves_other_series_alone(sigmoid_model):
    rng = np.random.default_rng(3)
    length = 60
    values = {name: rng.normal(10, 1, length) for name in ("a", "b", "c")}
    values["b"][30] += 40.0

    def points_of(name: str, start: int, stop: int) -> list[Point]:
        return [
            Point(name, 1.4e9 + 300 * i, float(values[name][i]))
            for i in range(start, stop)
        ]

    alone = scorer_for(sigmoid_model)
    expected, _ = run_batches(alone, [points_of("b", 0, length)])

    mixed = scorer_for(sigmoid_model)
    first = points_of("a", 0, 30) + points_of("b", 0, 30) + points_of("c", 0, 30)
    # In the middle of the second batch, series a sends a NaN, a repeat and an
    # older point, and series c a value too large to score.
    second = (
        points_of("b", 30, 35)
        + [Point("a", 1.4e9 + 300 * 29, 1.0), Point("a", 1.0, 1.0)]
        + points_of("a", 30, 32)
        + [Point("a", 1.4e9 + 300 * 32, math.nan)]
        + points_of("b", 35, 45)
        + [Point("c", 1.4e9 + 300 * 30, 1e305)]
        + points_of("b", 45, length)
    )
    results, _ = run_batches(mixed, [first, second])
    assert [r.reason for r in results[1].rejected] == [
        "duplicate_timestamp",
        "out_of_order",
        "non_finite_value",
        "value_out_of_range",
    ]
    got = scored_by_series(results)["b"]
    want = scored_by_series(expected)["b"]
    assert len(got) == len(want)
    np.testing.assert_allclose(
        [r[2:4] for r in got], [r[2:4] for r in want], rtol=1e-6, atol=1e-7
    )
    assert [r[4] for r in got] == [r[4] for r in want]


@PROPERTY_SETTINGS
@given(
    messages=st.lists(
        st.tuples(
            st.sampled_from([b"a", b"b", b"", None, b"\xff"]),
            st.one_of(
                message_values(),
                st.builds(
                    lambda t, v: json.dumps({"timestamp": t, "value": v}).encode(),
                    st.integers(0, 10**6),
                    st.floats(-1e6, 1e6, allow_nan=False),
                ),
            ),
        ),
        max_size=60,
    )
)
def test_decode_then_score_counts(sigmoid_model, messages):
    """The consumer's accounting: consumed = windows scored + invalid."""
    scorer = scorer_for(sigmoid_model)
    points = [p for key, value in messages if (p := check_decoded(key, value))]
    result = scorer.process(points)
    invalid = (len(messages) - len(points)) + len(result.rejected)
    assert result.windows_scored + invalid == len(messages)
    assert_scores_in_range([result])
