"""Checkpoint -> ONNX + Triton ``config.pbtxt`` (+ model card), with a parity check.

The exported network is the EMA generator with standing BatchNorm statistics, in eval mode, so an
image depends only on its own z (batching cannot change it). Names, dynamic axes and metadata follow
``docs/model-contract.md``. The config is built as Triton's own ``ModelConfig`` protobuf and written
in text format, so it is valid by construction; tests parse it back the same way.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ganserve.errors import UsageError
from ganserve.training.checkpoint import load_generator
from ganserve.training.families.base import ExportSpec

OPSET = 17
PARITY_TOLERANCE = 1e-4  # max abs difference between ONNX Runtime and PyTorch, on a [-1, 1] output

TENSORRT_NOTE = """\
# Triton model configuration written by `ganserve export` (see docs/model-contract.md).
# Optional GPU acceleration: to let Triton's onnxruntime backend run this model through TensorRT,
# add the block below (FP16 halves memory; the first load builds an engine, which takes a while):
#   optimization { execution_accelerators { gpu_execution_accelerator: [
#     { name: "tensorrt" parameters { key: "precision_mode" value: "FP16" }
#                        parameters { key: "max_workspace_size_bytes" value: "1073741824" } } ] } }
"""


def _example_inputs(spec: ExportSpec, batch: int, *, seed: int,
                    sizes: dict[str, int] | None = None) -> dict[str, torch.Tensor]:
    """Random inputs; dynamic axes take ``batch``, then ``sizes``, then the spec's example sizes."""
    g = torch.Generator().manual_seed(seed)
    axes = {**spec.example_sizes, **(sizes or {}), "batch": batch}

    def side(d: int | str) -> int:
        return d if isinstance(d, int) else axes[d]

    draw = torch.rand if spec.example_distribution == "uniform" else torch.randn
    out = {}
    for name, shape in spec.inputs.items():
        dims = [side(d) for d in shape]
        out[name] = (torch.randint(0, spec.int_inputs[name], dims, generator=g) if name in spec.int_inputs
                     else draw(*dims, generator=g))
    return out


def export_onnx(model: nn.Module, spec: ExportSpec, path: Path, *, metadata: dict[str, str]) -> None:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = _example_inputs(spec, 2, seed=0)
    dynamic = {name: {i: d for i, d in enumerate(shape) if isinstance(d, str)}
               for name, shape in {**spec.inputs, **spec.outputs}.items()}
    # The TorchScript-based exporter (dynamo=False) is used on purpose: it needs no onnxscript and
    # gives a plain opset-17 graph with our names; its deprecation notice is not actionable here.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        # GRU (text encoder): the exporter warns that batch sizes other than the traced one may fail and
        # that rnn.py's own input checks are traced as constants; parity_check runs batches 1, 5 and 16
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module="torch.nn.modules.rnn")
        torch.onnx.export(model.eval(), tuple(inputs.values()), str(path), dynamo=False, opset_version=OPSET,
                          input_names=list(spec.inputs), output_names=list(spec.outputs),
                          dynamic_axes=dynamic, do_constant_folding=True)
    proto = onnx.load(str(path))
    if spec.lazy_output:
        lazy_output(proto)
    onnx.helper.set_model_props(proto, {**spec.metadata, "ganserve.kind": spec.kind, **metadata})
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def lazy_output(proto) -> None:
    """Rewrites (in place) a graph whose one output is ``Where(keep, a, b)`` so that ``b`` is computed
    only when some row needs it: the nodes only ``b`` needs move into the ``then`` branch of an ``If``
    on "any row not kept", whose ``else`` branch is ``a``. Same results, row for row, whatever the
    batch holds: a kept row is ``a`` either way. (dcgan with truncation anchors: the anchored second
    pass of the generator runs only for batches holding a truncated z.)"""
    from onnx import TensorProto, helper

    graph = proto.graph
    (output,) = graph.output
    nodes = list(graph.node)
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    where = producer.get(output.name)
    if where is None or nodes[where].op_type != "Where":
        raise RuntimeError(f"lazy_output: the output {output.name!r} is not made by a Where node")
    keep, a, b = nodes[where].input

    def needed(names: list[str]) -> set[int]:
        seen: set[int] = set()
        todo = [producer[x] for x in names if x in producer]
        while todo:
            i = todo.pop()
            if i not in seen:
                seen.add(i)
                todo.extend(producer[x] for x in nodes[i].input if x in producer)
        return seen

    shared = needed([keep, a])
    only_b = sorted(needed([b]) - shared)
    if not only_b:
        raise RuntimeError("lazy_output: b shares all its work with keep and a; nothing to branch")
    result = output.name + "_lazy"
    then_branch = helper.make_graph(
        [nodes[i] for i in only_b] + [helper.make_node("Where", [keep, a, b], [result + "_pulled"])],
        "some_rows_not_kept", [], [helper.make_tensor_value_info(result + "_pulled", TensorProto.FLOAT, None)])
    else_branch = helper.make_graph(
        [helper.make_node("Identity", [a], [result + "_kept"])], "all_rows_kept", [],
        [helper.make_tensor_value_info(result + "_kept", TensorProto.FLOAT, None)])
    any_dropped = [
        helper.make_node("Not", [keep], [result + "_dropped"]),
        helper.make_node("Cast", [result + "_dropped"], [result + "_dropped_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMax", [result + "_dropped_f"], [result + "_any_f"], keepdims=0),
        helper.make_node("Constant", [], [result + "_zero"], value=helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])),
        helper.make_node("Greater", [result + "_any_f", result + "_zero"], [result + "_any"]),
        helper.make_node("If", [result + "_any"], [output.name], then_branch=then_branch, else_branch=else_branch),
    ]
    moved = set(only_b) | {where}
    kept_nodes = [n for i, n in enumerate(nodes) if i not in moved]
    del graph.node[:]
    graph.node.extend(kept_nodes + any_dropped)  # checked by export_onnx with the rest


def _scaled_rows(inputs: dict[str, torch.Tensor], scales: tuple[float, ...]) -> list[dict[str, torch.Tensor]]:
    """``inputs`` with rows scaled by ``scales`` cycling over the rows, then by each scale alone."""
    def scaled(factors: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v * factors.reshape(-1, *([1] * (v.dim() - 1))) for k, v in inputs.items()}

    rows = len(next(iter(inputs.values())))
    cycling = torch.tensor([scales[i % len(scales)] for i in range(rows)])
    return [scaled(cycling), *(scaled(torch.full((rows,), s)) for s in scales)]


def parity_check(model: nn.Module, spec: ExportSpec, path: Path, *, batch_sizes=(1, 5, 16)) -> float:
    """Run the ONNX file in ONNX Runtime and PyTorch on the same inputs, at every batch size and each of
    the spec's ``parity_sizes`` (e.g. odd image sides); return the max abs difference."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    cases = []
    for b, sizes in ((b, sizes) for sizes in spec.parity_sizes for b in batch_sizes):
        inputs = _example_inputs(spec, b, seed=b, sizes=sizes)
        cases += [(b, sizes, inputs)]
        if spec.parity_row_scales:
            cases += [(b, sizes, x) for x in _scaled_rows(inputs, spec.parity_row_scales)]
    for b, sizes, inputs in cases:
        with torch.no_grad():
            expected = model.eval()(*inputs.values())
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(list(spec.outputs), {k: v.numpy() for k, v in inputs.items()})
        for e, o in zip(expected, got):
            if o.shape != tuple(e.shape):
                raise RuntimeError(f"ONNX output shape {o.shape} != PyTorch {tuple(e.shape)} at batch {b} {sizes}")
            worst = max(worst, float(np.abs(o - e.numpy()).max()))
    return worst


def triton_config(name: str, spec: ExportSpec, *, max_batch_size: int, queue_delay_us: int,
                  instances: int = 1):
    """Triton ``ModelConfig`` for the onnxruntime backend on GPU, with dynamic batching.

    Dims omit the batch (max_batch_size > 0). A tensor named in ``spec.config_dims`` gets those fixed
    dims (fixed shapes where the ONNX axes are dynamic); the others get the ONNX dims with -1 for each
    dynamic axis (e.g. super-resolution's ``h`` and ``w``: any tile size).
    """
    from tritonclient.grpc import model_config_pb2 as mc

    def tensor(tname: str, shape: tuple, cls):
        dims = spec.config_dims.get(tname) or [-1 if isinstance(d, str) else d for d in shape[1:]]
        dtype = mc.TYPE_INT64 if tname in spec.int_inputs else mc.TYPE_FP32
        return cls(name=tname, data_type=dtype, dims=list(dims))

    config = mc.ModelConfig(
        name=name,
        backend="onnxruntime",
        max_batch_size=max_batch_size,
        input=[tensor(n, s, mc.ModelInput) for n, s in spec.inputs.items()],
        output=[tensor(n, s, mc.ModelOutput) for n, s in spec.outputs.items()],
        version_policy=mc.ModelVersionPolicy(latest=mc.ModelVersionPolicy.Latest(num_versions=1)),
        dynamic_batching=mc.ModelDynamicBatching(
            preferred_batch_size=sorted({max(1, max_batch_size // 4), max_batch_size}),
            max_queue_delay_microseconds=queue_delay_us),
        instance_group=[mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_GPU, count=instances)],
    )
    return config


def ensemble_config(name: str, parts: list[tuple[str, ExportSpec]], *, max_batch_size: int):
    """Triton ensemble ``name`` chaining ``parts`` ((model name, spec) in data-flow order). Each part's
    tensors take the ensemble names of its ``spec.ensemble_map`` (else their own): a tensor one step
    outputs feeds the later steps' inputs of the same ensemble name; the ensemble's inputs are the
    inputs no step produces, its outputs the last step's outputs, then those of the ``ensemble_exposed``
    parts from the last to the first."""
    from tritonclient.grpc import model_config_pb2 as mc

    produced: set[str] = set()
    inputs: dict[str, tuple[tuple, ExportSpec, str]] = {}
    steps = []
    for model_name, spec in parts:
        wire = {t: spec.ensemble_map.get(t, t) for t in (*spec.inputs, *spec.outputs)}
        for tname, shape in spec.inputs.items():
            if wire[tname] not in produced and wire[tname] not in inputs:
                inputs[wire[tname]] = (shape, spec, tname)
        steps.append(mc.ModelEnsembling.Step(
            model_name=model_name, model_version=-1,
            input_map={t: wire[t] for t in spec.inputs}, output_map={t: wire[t] for t in spec.outputs}))
        produced.update(wire[t] for t in spec.outputs)
    exposed = [parts[-1][1]] + [spec for _, spec in parts[-2::-1] if spec.ensemble_exposed]

    def tensor(ename: str, shape: tuple, spec: ExportSpec, own: str, cls):
        dtype = mc.TYPE_INT64 if own in spec.int_inputs else mc.TYPE_FP32
        return cls(name=ename, data_type=dtype, dims=[-1 if isinstance(d, str) else d for d in shape[1:]])

    return mc.ModelConfig(
        name=name, platform="ensemble", max_batch_size=max_batch_size,
        input=[tensor(e, shape, spec, own, mc.ModelInput) for e, (shape, spec, own) in inputs.items()],
        output=[tensor(spec.ensemble_map.get(t, t), shape, spec, t, mc.ModelOutput)
                for spec in exposed for t, shape in spec.outputs.items()],
        ensemble_scheduling=mc.ModelEnsembling(step=steps),
    )


ENSEMBLE_NOTE = """\
# Triton ensemble written by `ganserve export` (see docs/model-contract.md): one request goes through the
# steps below in order. Its version folder 1/ is empty on purpose (Triton requires the folder; an
# ensemble has no model file); the README.md kept there only lets git hold the folder.
"""


def write_config(config, path: Path, *, note: str = "") -> None:
    from google.protobuf import text_format

    comment = "".join(f"# {line}\n".replace("# \n", "#\n") for line in note.splitlines())
    header = ENSEMBLE_NOTE if config.platform == "ensemble" else TENSORRT_NOTE
    path.write_text(header + comment + text_format.MessageToString(config))


def read_config(path: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    return text_format.Parse(path.read_text(), mc.ModelConfig())


@dataclass(frozen=True)
class ExportResult:
    onnx_path: Path
    config_path: Path
    parity_max_abs_diff: float
    size_bytes: int


def _export_part(module: nn.Module, spec: ExportSpec, *, model_dir: Path, name: str, version: int,
                 metadata: dict[str, str], max_batch_size: int, queue_delay_us: int) -> ExportResult:
    onnx_path = model_dir / str(version) / "model.onnx"
    export_onnx(module, spec, onnx_path, metadata=metadata)
    diff = parity_check(module, spec, onnx_path)
    if diff > PARITY_TOLERANCE:
        raise RuntimeError(f"{name}: ONNX/PyTorch parity failed: max abs diff {diff:.2e} > {PARITY_TOLERANCE:.0e}")
    config_path = model_dir / "config.pbtxt"
    write_config(triton_config(name, spec, max_batch_size=max_batch_size, queue_delay_us=queue_delay_us),
                 config_path, note=spec.config_note)
    return ExportResult(onnx_path, config_path, diff, onnx_path.stat().st_size)


def export_checkpoint_parts(checkpoint: str | Path, *, repository: str | Path, name: str, version: int = 1,
                            max_batch_size: int = 64, queue_delay_us: int = 2000,
                            fixed_tile: bool = False) -> dict[str, ExportResult]:
    """Every model of the checkpoint's family (:meth:`Family.export_parts`), keyed by model name. A family
    with several parts (text-to-image: ``<name>_encoder``, ``<name>_generator``) also gets the ensemble
    ``<name>`` that chains them; its result has no ONNX file (``size_bytes`` 0). ``fixed_tile``: a
    super-resolution model's config.pbtxt fixes the tile shape (:func:`with_fixed_tile`)."""
    if version < 1:
        raise UsageError(f"--version must be >= 1 (Triton version folders are positive integers), got {version}")
    if max_batch_size < 1:
        raise UsageError(f"--max-batch-size must be >= 1, got {max_batch_size}")
    loaded = load_generator(checkpoint)
    ckpt, cfg = loaded.checkpoint, loaded.family.cfg
    meta = ckpt.get("meta", {})
    metadata = {
        "ganserve.family": cfg.model.family,
        "ganserve.training_data": str(meta.get("data", cfg.data.name)),
        "ganserve.training_steps": str(ckpt["step"]),
        "ganserve.training_commit": str(meta.get("commit", "unknown")),
        "ganserve.config": json.dumps(ckpt["config"], sort_keys=True),
    }
    parts = loaded.family.export_parts(loaded.model)
    if fixed_tile:
        parts = [(suffix, module, with_fixed_tile(spec)) for suffix, module, spec in parts]
    results: dict[str, ExportResult] = {}
    for suffix, module, spec in parts:
        results[name + suffix] = _export_part(
            module, spec, model_dir=Path(repository) / (name + suffix), name=name + suffix, version=version,
            metadata=metadata, max_batch_size=max_batch_size, queue_delay_us=queue_delay_us)
    if len(parts) > 1:
        model_dir = Path(repository) / name
        keep = model_dir / str(version) / "README.md"  # git keeps no empty folder; Triton ignores the file
        keep.parent.mkdir(parents=True, exist_ok=True)
        keep.write_text(f"Empty on purpose: `{name}` is a Triton ensemble (see ../config.pbtxt); its steps "
                        f"{', '.join(name + s for s, _, _ in parts)} hold the ONNX models.\n")
        config = ensemble_config(name, [(name + s, spec) for s, _, spec in parts], max_batch_size=max_batch_size)
        write_config(config, model_dir / "config.pbtxt")
        results[name] = ExportResult(model_dir / str(version), model_dir / "config.pbtxt",
                                     max(r.parity_max_abs_diff for r in results.values()), 0)
    return results


def export_checkpoint(checkpoint: str | Path, *, repository: str | Path, name: str, version: int = 1,
                      max_batch_size: int = 64, queue_delay_us: int = 2000, fixed_tile: bool = False) -> ExportResult:
    """Export a one-model family (DCGAN, super-resolution); see :func:`export_checkpoint_parts`."""
    results = export_checkpoint_parts(checkpoint, repository=repository, name=name, version=version,
                                      max_batch_size=max_batch_size, queue_delay_us=queue_delay_us,
                                      fixed_tile=fixed_tile)
    return results[name]


def with_fixed_tile(spec: ExportSpec) -> ExportSpec:
    """A super-resolution spec whose config.pbtxt fixes ``lr`` to one ``T x T`` tile (T: the model's
    ``ganserve.tile_size``). The ONNX file keeps dynamic h and w; Triton then accepts only that
    shape, so every request has it and the dynamic batcher can merge any of them, and a TensorRT
    engine needs one optimisation profile. The gateway reads the config: it cuts only T x T tiles
    (an image smaller than a tile is edge-padded) and refuses another ``tile_size`` with a 422."""
    if spec.kind != "super-resolution":
        raise UsageError(f"--fixed-tile applies to super-resolution models, not to a {spec.kind!r} model")
    t, s = int(spec.metadata["ganserve.tile_size"]), int(spec.metadata["ganserve.scale"])
    overlap = spec.metadata["ganserve.tile_overlap"]
    note = (f"Super-resolution x{s} with a fixed tile (ganserve export --fixed-tile): lr [3, {t}, {t}] ->\n"
            f"sr [3, {s * t}, {s * t}]. Every request has this one shape, so Triton's dynamic batcher can\n"
            f"merge any of them (and a TensorRT engine needs one profile). The gateway cuts images into\n"
            f"{t}x{t} LR tiles overlapping by {overlap} px by default (smaller images edge-padded) and\n"
            "refuses any other tile_size. Each output pixel comes from the tile that owns it.\n"
            "Values: lr and sr RGB in [0, 1].")
    return dataclasses.replace(spec, config_dims={"lr": (3, t, t), "sr": (3, s * t, s * t)}, config_note=note)
