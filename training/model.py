"""Transformer that scores every position of a window of normalised values.

Input: (batch, window_size) float32 from ``training.normalise``. Output: (batch,
window_size) anomaly scores in [0, 1], one per point of the window; the streaming
service reports the score of the newest (last) position.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from training.config import ModelConfig


def sinusoidal_encoding(window_size: int, d_model: int) -> torch.Tensor:
    """Build the fixed sine/cosine position encoding of "Attention Is All You Need".

    Returns (window_size, d_model) float32. Even columns hold sin, odd columns cos.
    """
    position = torch.arange(window_size, dtype=torch.float32)[:, None]  # (window, 1)
    frequency = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32)
        * (-math.log(10000.0) / d_model)
    )  # (ceil(d_model / 2),)
    encoding = torch.zeros(window_size, d_model)
    encoding[:, 0::2] = torch.sin(position * frequency)
    encoding[:, 1::2] = torch.cos(position * frequency[: d_model // 2])
    return encoding


class WindowScorer(nn.Module):
    """BERT-style encoder over one window with a per-position scoring head."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.d_model % config.n_heads:
            raise ValueError(
                f"d_model ({config.d_model}) must be divisible by n_heads ({config.n_heads})"
            )
        self.config = config
        self.value_embedding = nn.Linear(1, config.d_model)
        # A buffer, not a parameter: saved with the weights, never trained.
        self.register_buffer(
            "position_encoding",
            sinusoidal_encoding(config.window_size, config.d_model),
            persistent=True,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model=config.d_model,
                nhead=config.n_heads,
                dim_feedforward=config.d_ff,
                dropout=config.dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(config.n_layers)
        )
        # Pre-norm layers leave the residual stream unnormalised, so one final norm.
        self.final_norm = nn.LayerNorm(config.d_model)
        self.head = nn.Sequential(
            nn.Linear(config.d_model, config.head_hidden),
            nn.GELU(),
            nn.Linear(config.head_hidden, 1),
        )

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Return the pre-sigmoid scores, (batch, window); training uses these."""
        # The check is skipped while tracing for ONNX export, where the shape is
        # symbolic; a window of 1 would otherwise broadcast silently.
        if not torch.jit.is_tracing() and x.shape[1] != self.config.window_size:
            raise ValueError(
                f"expected windows of {self.config.window_size} values, got {x.shape[1]}"
            )
        h = self.value_embedding(x.unsqueeze(-1))  # (batch, window, d_model)
        h = self.dropout(h + self.position_encoding)  # (batch, window, d_model)
        for layer in self.layers:
            h = layer(h)  # (batch, window, d_model)
        h = self.final_norm(h)
        return self.head(h).squeeze(-1)  # (batch, window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score each position of each window: (batch, window) -> (batch, window) in [0, 1]."""
        return torch.sigmoid(self.forward_logits(x))

    def count_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def weighted_bce_with_logits(
    logits: torch.Tensor, targets: torch.Tensor, pos_weight: float
) -> torch.Tensor:
    """Compute binary cross-entropy against label probabilities, weighting positives.

    Per element: -(pos_weight * y * log(sigmoid(l)) + (1 - y) * log(1 - sigmoid(l))),
    averaged over the batch and the window. The target y may be any probability.
    """
    weight = torch.tensor([pos_weight], dtype=logits.dtype, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight)
