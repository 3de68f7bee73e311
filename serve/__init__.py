"""The ganserve gateway: HTTP and gRPC adapters over one service layer and a pluggable backend.

Installed as ``ganserve.serve``. Nothing in this package imports PyTorch or ``ganserve.training``: the
only hand-off from training is the model repository (see ``docs/model-contract.md``).
"""
