"""The PyTorch window scorer and its numpy checkpoint."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.config import ModelConfig  # noqa: E402
from training.export import CONFIG_KEY, load_checkpoint, save_checkpoint  # noqa: E402
from training.model import WindowScorer, sinusoidal_encoding, weighted_bce_with_logits  # noqa: E402


@pytest.fixture
def model():
    torch.manual_seed(0)
    return WindowScorer(ModelConfig()).eval()


def test_model_output_shape_and_range(model):
    x = torch.randn(8, 16) * 3
    scores = model(x)
    assert scores.shape == (8, 16)
    assert scores.dtype == torch.float32
    assert torch.all((scores >= 0) & (scores <= 1))


def test_model_parameter_count(model):
    # Embedding 128, two encoder layers of 33,472, final norm 128, head 2,113.
    assert model.count_parameters() == 69_313


def test_position_encoding_is_fixed_buffer(model):
    assert model.position_encoding.shape == (16, 64)
    assert "position_encoding" in model.state_dict()
    assert all(name != "position_encoding" for name, _ in model.named_parameters())
    torch.testing.assert_close(model.position_encoding, sinusoidal_encoding(16, 64))


def test_sinusoidal_encoding_values():
    encoding = sinusoidal_encoding(16, 64)
    assert torch.all(encoding[0, 0::2] == 0)
    assert torch.all(encoding[0, 1::2] == 1)
    assert encoding[3, 0].item() == pytest.approx(np.sin(3.0))


def test_wrong_window_size_raises(model):
    with pytest.raises(ValueError, match="windows of 16"):
        model(torch.zeros(2, 8))


def test_positions_are_distinguished(model):
    # A spike at the newest position and one at the oldest get different scores.
    newest = torch.zeros(1, 16)
    newest[0, -1] = 3.0
    oldest = torch.zeros(1, 16)
    oldest[0, 0] = 3.0
    assert not torch.allclose(model(newest), model(oldest).flip(-1))


def test_weighted_bce_matches_formula():
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.0]])
    targets = torch.tensor([[1.0, 0.25], [0.0, 0.5]])
    p = torch.sigmoid(logits)
    expected = -(2.0 * targets * torch.log(p) + (1 - targets) * torch.log(1 - p)).mean()
    torch.testing.assert_close(weighted_bce_with_logits(logits, targets, 2.0), expected)


def test_checkpoint_round_trip(model, tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(model, path)
    with np.load(path, allow_pickle=False) as archive:
        assert CONFIG_KEY in archive.files
        assert all(archive[name].dtype != object for name in archive.files)
    restored = load_checkpoint(path)
    assert restored.config == model.config
    assert not restored.training
    x = torch.randn(5, 16)
    with torch.no_grad():
        torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)
