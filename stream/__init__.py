"""AnomalyBERT Stream: streaming anomaly detection with a small transformer.

The Python API is ``from stream import Detector`` (see :mod:`stream.api`).
"""

__version__ = "0.1.0"

__all__ = ["Detector", "__version__"]


def __getattr__(name: str):
    # Imported on first use, so that ``import stream.cli`` and the consumer do not
    # load the scorer and numpy before they need them.
    if name == "Detector":
        from stream.api import Detector

        return Detector
    raise AttributeError(f"module 'stream' has no attribute {name!r}")
