"""ganserve: train GAN generators, export them for Triton, serve them over HTTP and gRPC.

This package holds only what both halves share and the ``ganserve`` command dispatcher.
``training`` (PyTorch) and ``serve`` (no PyTorch) never import each other.
"""

__version__ = "0.1.0"
