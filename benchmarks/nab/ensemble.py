"""``python -m benchmarks.nab.ensemble``: one model that averages several models' scores.

Builds an ONNX graph that feeds the same ``(batch, 16)`` input to every given
model and returns the element-wise mean of their ``(batch, 16)`` scores. The
metadata is the first model's, alert settings included, with the new file's
checksum and version, so the service and ``python -m benchmarks.nab --model``
load it like any other model.
The models must share the window size, the normalisation, the input and
output names, the lag and the alert calibration. The threshold is the first
model's. Needs the ``onnx`` package (the ``train`` or ``dev`` extra).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import onnx
from onnx import compose, helper

from benchmarks import help_description
from stream.errors import ModelError
from stream.model import load_model, sha256_file


def build_ensemble(metadata_paths: list[Path], output_dir: Path) -> Path:
    """Write ``model.onnx`` and ``model.onnx.json`` of the mean model; return the JSON path.

    The alert settings (threshold, lag, calibration) are the first model's.
    Raises ValueError when fewer than two models are given, when one is given
    twice, when ``output_dir`` contains a member, or when their window size,
    normalisation, input, output, lag or alert calibration differ, and
    ModelError when a model cannot be loaded.
    """
    if len(metadata_paths) < 2:
        raise ValueError(
            f"an ensemble needs at least two models, got {len(metadata_paths)}; "
            "pass two or more model.onnx.json files"
        )
    models = [load_model(path) for path in metadata_paths]
    output_folder = output_dir.resolve()
    seen: dict[Path, Path] = {}
    for model in models:
        onnx_file = model.metadata.onnx_path.resolve()
        if onnx_file in seen:
            raise ValueError(
                f"{model.metadata.path} and {seen[onnx_file]} name the same model "
                f"file {onnx_file}; pass each member once"
            )
        seen[onnx_file] = model.metadata.path
        if onnx_file.parent == output_folder:
            raise ValueError(
                f"--output-dir {output_dir} contains the member {model.metadata.path}, "
                "which the ensemble would overwrite; pass another folder"
            )
    first = models[0].metadata
    for model in models[1:]:
        other = model.metadata
        shared = {
            "window_size": (first.window_size, other.window_size),
            "input_name": (first.input_name, other.input_name),
            "output_name": (first.output_name, other.output_name),
            "normalisation": (first.normalisation, other.normalisation),
            # The mean model takes these from the first member, so a member
            # scored with other alert settings would be judged by the wrong ones.
            "alert.lag_points": (first.alert.lag_points, other.alert.lag_points),
            "alert.calibration": (first.alert.calibration, other.alert.calibration),
        }
        for name, (expected, found) in shared.items():
            if found != expected:
                raise ValueError(
                    f"{other.path} has {name}={found!r} but "
                    f"{first.path} has {expected!r}; "
                    "ensemble only models that share it"
                )

    nodes = []
    initializers = []
    member_outputs = []
    protos = [onnx.load(str(model.metadata.onnx_path)) for model in models]
    for index, proto in enumerate(protos):
        prefix = f"member{index}_"
        # add_prefix returns a renamed copy, so protos[0] stays the template.
        graph = compose.add_prefix(proto, prefix).graph
        nodes.append(
            helper.make_node(
                "Identity", [first.input_name], [prefix + first.input_name]
            )
        )
        nodes.extend(graph.node)
        initializers.extend(graph.initializer)
        member_outputs.append(prefix + first.output_name)
    nodes.append(helper.make_node("Mean", member_outputs, [first.output_name]))

    template = protos[0]
    graph = helper.make_graph(
        nodes,
        "ensemble",
        [template.graph.input[0]],
        [template.graph.output[0]],
        initializer=initializers,
    )
    ensemble = helper.make_model(graph, opset_imports=template.opset_import)
    ensemble.ir_version = template.ir_version
    onnx.checker.check_model(ensemble)

    output_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = output_dir / "model.onnx"
    onnx.save(ensemble, str(onnx_path))
    metadata = copy.deepcopy(first.raw)
    digest = sha256_file(onnx_path)
    metadata["model_sha256"] = digest
    metadata["model_version"] = (
        metadata["model_version"].split("+")[0] + "+" + digest[:8]
    )
    metadata["onnx"]["file"] = onnx_path.name
    # The members' checkpoints do not describe the mean model.
    metadata["onnx"].pop("checkpoint_file", None)
    metadata["ensemble"] = {
        "members": [
            {
                "model_version": m.metadata.model_version,
                "path": str(m.metadata.path.resolve()),
            }
            for m in models
        ],
        "combination": "mean of the members' window scores",
    }
    json_path = output_dir / "model.onnx.json"
    json_path.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return json_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.nab.ensemble", description=help_description(__doc__)
    )
    parser.add_argument(
        "models", type=Path, nargs="+", help="model.onnx.json files of the members"
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        required=True,
        help="folder for the mean model's model.onnx and model.onnx.json",
    )
    args = parser.parse_args(argv)
    try:
        path = build_ensemble(args.models, args.output_dir)
    except (ValueError, ModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(
            f"error: cannot write the ensemble to {args.output_dir}: {error}; "
            "pass a folder that can be created and written",
            file=sys.stderr,
        )
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
