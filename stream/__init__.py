"""AnomalyBERT Stream: streaming anomaly detection with a small transformer."""

__version__ = "0.1.0"
