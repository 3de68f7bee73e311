"""ganserve training: GAN generator families in PyTorch, one training loop, ONNX export.

Installed as ``ganserve.training``. Never imported by ``ganserve.serve``: the only hand-off is
``model_repository/``.
"""
