"""Exceptions raised by the inference library and the service."""


class AnomalyBertError(Exception):
    """Root of every error this package raises on purpose."""


class ModelError(AnomalyBertError):
    """The model file or its metadata is missing, corrupt or inconsistent."""


class InvalidPointError(AnomalyBertError):
    """A point was rejected before it reached the model.

    ``reason`` is a short machine-readable code (it becomes a metric label and a
    dead-letter header); the message says what was wrong and how to fix it.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# Command that installs the torch-based [train] extra of training and fine-tuning.
# The package is installed from a checkout, so it runs in the repository root.
TRAIN_EXTRA_INSTALL_COMMAND = "pip install -e '.[train]'"


class InputFileError(AnomalyBertError):
    """A CSV input file could not be read."""
