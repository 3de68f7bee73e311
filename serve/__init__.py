"""The ganserve gateway: HTTP and gRPC adapters over one service layer and a pluggable backend.

Nothing in this package imports PyTorch or ``training``: the only hand-off from training is the
model repository (see ``docs/model-contract.md``).
"""
