"""The output directory check that training, fine-tuning and generation run first."""

from __future__ import annotations

import tempfile
from pathlib import Path

from training.errors import TrainingInputError


def prepare_output_dir(path: Path | str) -> Path:
    """Create ``path`` with its parents if needed and check that files can be created in it.

    Callers run it before any training, so that a bad path fails in seconds and
    not at export. Raises TrainingInputError when ``path`` or one of its parents
    exists and is not a directory, or when the directory cannot be created or
    written to.
    """
    path = Path(path)
    for ancestor in (path, *path.parents):
        if not ancestor.exists():
            continue
        if ancestor == path and not path.is_dir():
            raise TrainingInputError(
                f"output directory {path} exists and is not a directory; "
                "choose another --output-dir"
            )
        if not ancestor.is_dir():
            raise TrainingInputError(
                f"cannot create output directory {path}: {ancestor} exists and is "
                "not a directory; choose another --output-dir"
            )
        break
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise TrainingInputError(
            f"cannot create or write to output directory {path} "
            f"({exc.strerror or exc}); choose a writable --output-dir"
        ) from None
    return path
