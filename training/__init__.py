"""Training of the window anomaly scorer: synthetic labelled series, the PyTorch
model, the training loop and the export to ONNX for the streaming service.

Needs the ``train`` extra (torch, onnx, tqdm). The streaming package never imports
this one; it reads only the exported ``model.onnx`` and ``model.onnx.json``.
"""
