"""ganserve training: GAN generator families in PyTorch, one training loop, ONNX export.

Never imported by ``serve``: the only hand-off is ``model_repository/``.
"""
