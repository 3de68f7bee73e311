"""A generator back from its exported ONNX model, when the checkpoint it came from is gone.

``ganserve export`` writes the EMA generator in eval mode, and the exporter folds every BatchNorm into
the convolution before it; the graph keeps the Conv and PReLU weights in forward order (some under
their module names, the rest as ``onnx::Conv_N`` / ``onnx::PRelu_N``) and the run's config in the
``ganserve.config`` metadata. :func:`generator_from_onnx` rebuilds the family's generator from that
config, loads each Conv's folded weights into the matching ``nn.Conv2d`` (the n-th Conv of the graph
into the n-th convolution of the module) and each PReLU slope likewise, and turns every BatchNorm
into the identity on the data: its running mean and variance are measured on calibration inputs
(:meth:`Family.sample_inputs`, fixed seed) and its affine parameters set to undo them
(``weight = sqrt(var + eps)``, ``bias = mean``). In eval mode the module then computes exactly the
ONNX model's function (checked: max abs difference <= :data:`PARITY_TOLERANCE`); in train mode the
batch statistics stand in for the measured ones, so training (e.g. SRGAN's stage 2 through
``train.init_from=model.onnx``) starts from the exported model, not from a broken copy.

A graph that keeps every weight under its module's state_dict name (no BatchNorm folded: the DCGAN
generator's ConvTranspose + BatchNormalization) is loaded by name instead. Otherwise only Conv, PReLU
and parameter-free operations are read back: a generator with other weighted layers (Gemm,
ConvTranspose, embeddings) is refused with a :class:`UsageError`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ganserve.errors import UsageError
from ganserve.training.families import Family, config_from_dict, get_family
from ganserve.training.files import load_onnx, onnx_session

PARITY_TOLERANCE = 1e-5
WEIGHTED_OPS = ("Conv", "PRelu")
UNREADABLE_OPS = ("Gemm", "MatMul", "ConvTranspose", "BatchNormalization", "InstanceNormalization", "Gather",
                  "GRU", "LSTM", "RNN")  # weighted layers this reader does not map back


def generator_from_onnx(path: str | Path) -> tuple[Family, nn.Module]:
    """(family, generator in eval mode) with the weights of the ONNX model at ``path``, its output
    within :data:`PARITY_TOLERANCE` of ONNX Runtime's on calibration inputs."""
    from onnx import numpy_helper

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"ONNX model {path} does not exist")
    proto = load_onnx(path)
    meta = {p.key: p.value for p in proto.metadata_props}
    if "ganserve.config" not in meta:
        raise UsageError(f"{path} has no ganserve.config metadata: not written by ganserve export")
    family = get_family(config_from_dict(json.loads(meta["ganserve.config"])))
    G = family.build_generator()
    init = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    if _load_by_name(G, init):  # every weight kept under its module name (e.g. DCGAN: unfolded BatchNorm)
        _check_parity(path, family, G)
        return family, G.eval()
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in proto.graph.node
              if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    weighted = [n for n in proto.graph.node if n.op_type in WEIGHTED_OPS]
    other = sorted({n.op_type for n in proto.graph.node if n.op_type in UNREADABLE_OPS})
    if other:
        raise UsageError(f"{path}: weights of {', '.join(other)} cannot be read back (only {', '.join(WEIGHTED_OPS)})")
    modules = [m for m in G.modules() if isinstance(m, (nn.Conv2d, nn.PReLU))]
    kinds = ["Conv" if isinstance(m, nn.Conv2d) else "PRelu" for m in modules]
    if kinds != [n.op_type for n in weighted]:
        raise UsageError(f"{path}: its graph's Conv/PReLU layers do not match the {family.name} generator of its "
                         "own config")

    def value(name: str) -> torch.Tensor:
        if name not in init and name not in consts:
            raise UsageError(f"{path}: weight {name!r} is computed in the graph, not stored")
        return torch.from_numpy(np.array(init.get(name, consts.get(name)), dtype=np.float32))

    with torch.no_grad():
        for module, node in zip(modules, weighted):
            if isinstance(module, nn.Conv2d):
                w = value(node.input[1])
                b = value(node.input[2]) if len(node.input) > 2 and node.input[2] else torch.zeros(w.shape[0])
                if w.shape != module.weight.shape:
                    raise UsageError(f"{path}: Conv weight {tuple(w.shape)} does not fit {tuple(module.weight.shape)}")
                module.weight.copy_(w)
                if module.bias is None:
                    raise UsageError(f"{path}: a Conv carries a bias the {family.name} generator has no place for")
                module.bias.copy_(b)
            else:
                module.weight.copy_(value(node.input[1]).reshape(module.weight.shape))
    _batchnorm_as_identity(family, G)
    _check_parity(path, family, G)
    return family, G.eval()


def _load_by_name(G: nn.Module, init: dict[str, np.ndarray]) -> bool:
    """Load ``G``'s state from initializers named as its state_dict keys (BatchNorm batch counters
    aside); False, loading nothing, unless every one is there with its shape."""
    own = {k: v for k, v in G.state_dict().items() if not k.endswith("num_batches_tracked")}
    if not all(k in init and tuple(init[k].shape) == tuple(v.shape) for k, v in own.items()):
        return False
    G.load_state_dict({k: torch.from_numpy(np.array(init[k], dtype=np.float32)) for k in own}, strict=False)
    return True


def _batchnorm_as_identity(family: Family, G: nn.Module) -> None:
    """Every BatchNorm of ``G`` becomes the identity on calibration inputs (its convolution already holds
    the folded normalisation): measured mean and variance as running statistics, affine parameters that
    undo them."""
    bns = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    stats: dict[nn.Module, list[torch.Tensor]] = {bn: [] for bn in bns}
    with torch.no_grad():
        for bn in bns:  # exact identity in eval mode while measuring
            bn.reset_running_stats()
            bn.running_var.fill_(1.0 - bn.eps)
            bn.weight.fill_(1.0)
            bn.bias.zero_()
    hooks = [bn.register_forward_hook(lambda m, inp, out: stats[m].append(inp[0].detach())) for bn in bns]
    try:
        G.eval()
        gen = torch.Generator().manual_seed(12345)
        batch, batches = family.calibration
        with torch.no_grad():
            for _ in range(batches):
                G(family.sample_inputs(batch, gen=gen, device=torch.device("cpu")))
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        for bn in bns:
            x = torch.cat([t.transpose(0, 1).flatten(1) for t in stats[bn]], 1).double()  # [C, N]
            mean, var = x.mean(1), x.var(1, unbiased=False)
            bn.running_mean.copy_(mean.float())
            bn.running_var.copy_(var.float())
            bn.weight.copy_((var + bn.eps).sqrt().float())
            bn.bias.copy_(mean.float())


def _check_parity(path: Path, family: Family, G: nn.Module) -> None:
    spec = family.export_spec()
    session, _ = onnx_session(path, kind=spec.kind)
    if len(spec.inputs) != 1:
        raise UsageError(f"{path}: only single-input generators can be read back, this one takes {list(spec.inputs)}")
    G.eval()
    gen = torch.Generator().manual_seed(54321)
    x = family.sample_inputs(4, gen=gen, device=torch.device("cpu"))
    with torch.no_grad():
        ours = G(x).numpy()
    theirs = session.run(None, {next(iter(spec.inputs)): x.numpy()})[0]
    diff = float(np.abs(ours - theirs).max())
    if not diff <= PARITY_TOLERANCE:
        raise UsageError(f"{path}: the rebuilt {family.name} generator differs from the ONNX model by {diff:.2e} "
                         f"(> {PARITY_TOLERANCE:g}); the graph is not one this reader understands")
