"""Reads a Triton model repository: configs, versions and ONNX metadata of every model.

Layout and rules are Triton's (``<root>/<model>/config.pbtxt``, numeric version folders, the
``version_policy``); the config is parsed with Triton's own protobuf. What a model *is* (kind, latent
size, value range, geometry) comes from its ONNX ``metadata_props``, per ``docs/model-contract.md``.
A model that fails any check becomes a :class:`LoadProblem` with a message saying what to fix; it
never stops the other models from loading.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import onnx
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

log = logging.getLogger(__name__)

ModelKind = Literal["unconditional", "text-conditional", "super-resolution"]
SERVED_KINDS: tuple[ModelKind, ...] = ("unconditional", "super-resolution")
DEFAULT_MODEL_FILENAME = "model.onnx"
_DTYPES = {mc.TYPE_FP32: np.dtype(np.float32), mc.TYPE_FP16: np.dtype(np.float16),
           mc.TYPE_INT64: np.dtype(np.int64), mc.TYPE_INT32: np.dtype(np.int32)}
# kind -> (input name, output name): the tensor names the contract fixes
TENSOR_NAMES: dict[str, tuple[str, str]] = {
    "unconditional": ("z", "image"),
    "super-resolution": ("lr", "sr"),
}


class ModelLoadError(Exception):
    """Why one model (version) cannot be served."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as ``config.pbtxt`` declares it; ``dims`` exclude the batch dimension."""

    name: str
    dtype: np.dtype
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ModelVersion:
    """Everything the gateway needs to know about one version of one model."""

    name: str
    version: int
    path: Path                          # the ONNX file
    kind: ModelKind
    max_batch_size: int                 # > 0: dimension 0 is the batch
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    value_range: tuple[float, float]    # pixel range of the output (and of SR input)
    queue_delay_us: int | None          # dynamic_batching.max_queue_delay_microseconds, if batching
    latent_dim: int | None = None       # generators
    channels: int | None = None         # output image geometry, when fixed
    image_size: int | None = None
    scale: int | None = None            # super-resolution factor
    input_range: tuple[float, float] | None = None  # super-resolution: range of the lr pixels
    tile_size: int | None = None        # super-resolution: lr tile side (None: whole images)
    tile_overlap: int = 0               # super-resolution: overlap between neighbouring tiles
    metadata: Mapping[str, str] = field(default_factory=dict)  # every ganserve.* entry, as stored

    @property
    def input_name(self) -> str:
        return TENSOR_NAMES[self.kind][0]

    @property
    def output_name(self) -> str:
        return TENSOR_NAMES[self.kind][1]


@dataclass(frozen=True)
class LoadProblem:
    """A model (or one version of it) that could not be loaded, and why."""

    model: str
    version: int | None
    message: str


@dataclass(frozen=True)
class Repository:
    """The servable content of a repository: versions per model (ascending), and the problems."""

    root: Path
    models: Mapping[str, tuple[ModelVersion, ...]]
    problems: tuple[LoadProblem, ...]

    def without(self, failed: Mapping[tuple[str, int], str]) -> Repository:
        """This repository less the versions in ``failed`` ((model, version) -> why), which become
        problems (a backend that could not load them reports them this way)."""
        models = {name: tuple(v for v in versions if (name, v.version) not in failed)
                  for name, versions in self.models.items()}
        extra = tuple(LoadProblem(name, version, why) for (name, version), why in failed.items())
        return Repository(root=self.root, models={n: vs for n, vs in models.items() if vs},
                          problems=self.problems + extra)


def load_repository(root: Path) -> Repository:
    """Reads every model under ``root``. Raises ``FileNotFoundError`` only if ``root`` is missing."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"model repository {str(root)!r} is not a directory")
    models: dict[str, tuple[ModelVersion, ...]] = {}
    problems: list[LoadProblem] = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        name = model_dir.name
        try:
            config = read_config(model_dir)
            version_dirs = _selected_versions(model_dir, config)
        except ModelLoadError as exc:
            problems.append(LoadProblem(name, None, str(exc)))
            continue
        loaded = []
        for version, version_dir in version_dirs:
            try:
                loaded.append(_read_version(name, version, version_dir, config))
            except ModelLoadError as exc:
                problems.append(LoadProblem(name, version, str(exc)))
        if loaded:
            models[name] = tuple(loaded)
    for problem in problems:
        where = problem.model if problem.version is None else f"{problem.model} version {problem.version}"
        log.error("model %s not loaded: %s", where, problem.message)
    return Repository(root=root, models=models, problems=tuple(problems))


def read_config(model_dir: Path) -> mc.ModelConfig:
    """``<model_dir>/config.pbtxt`` as Triton's ``ModelConfig`` message, checked for what the
    embedded backend relies on."""
    path = model_dir / "config.pbtxt"
    try:
        config = text_format.Parse(path.read_text(encoding="utf-8"), mc.ModelConfig())
    except FileNotFoundError:
        raise ModelLoadError(f"{path} is missing") from None
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path} is not a valid Triton model config: {exc}") from exc
    if config.name and config.name != model_dir.name:
        raise ModelLoadError(f"config name {config.name!r} differs from its folder {model_dir.name!r}")
    if config.backend != "onnxruntime" and config.platform != "onnxruntime_onnx":
        found = config.backend or config.platform or "none"
        raise ModelLoadError(f"backend {found!r} is not served by the gateway (need 'onnxruntime')")
    if config.max_batch_size <= 0:
        raise ModelLoadError("max_batch_size must be > 0 (dimension 0 is the batch)")
    return config


def _selected_versions(model_dir: Path, config: mc.ModelConfig) -> list[tuple[int, Path]]:
    """Version folders that the config's ``version_policy`` serves, ascending (Triton's rules:
    default ``latest { num_versions: 1 }``)."""
    available = sorted((int(p.name), p) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if not available:
        raise ModelLoadError(f"{model_dir} has no version folder (e.g. {model_dir / '1'})")
    policy = config.version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return available
    if which == "specific":
        wanted = set(policy.specific.versions)
        chosen = [(v, p) for v, p in available if v in wanted]
        if not chosen:
            raise ModelLoadError(f"none of the versions {sorted(wanted)} in version_policy exists")
        return chosen
    count = policy.latest.num_versions if which == "latest" else 1
    return available[-max(count, 1):]


def _read_version(name: str, version: int, version_dir: Path, config: mc.ModelConfig) -> ModelVersion:
    path = version_dir / (config.default_model_filename or DEFAULT_MODEL_FILENAME)
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for a bad file
        raise ModelLoadError(f"{path} is not a readable ONNX model: {exc}") from exc
    meta = {p.key: p.value for p in proto.metadata_props if p.key.startswith("ganserve.")}

    kind = meta.get("ganserve.kind")
    if kind not in get_args(ModelKind):
        raise ModelLoadError(f"ONNX metadata ganserve.kind is {kind!r}; expected one of "
                             f"{', '.join(get_args(ModelKind))}")
    if kind not in SERVED_KINDS:
        raise ModelLoadError(f"kind {kind!r} is not served by this gateway version yet")

    inputs = tuple(_tensor(t) for t in config.input)
    outputs = tuple(_tensor(t) for t in config.output)
    in_name, out_name = TENSOR_NAMES[kind]
    _check_names(config_names={t.name for t in inputs}, expected={in_name}, what="inputs")
    _check_names(config_names={t.name for t in outputs}, expected={out_name}, what="outputs")
    initializers = {t.name for t in proto.graph.initializer}
    _check_names(config_names={t.name for t in inputs}, what="inputs of the ONNX graph",
                 expected={i.name for i in proto.graph.input if i.name not in initializers})
    _check_names(config_names={t.name for t in outputs}, what="outputs of the ONNX graph",
                 expected={o.name for o in proto.graph.output})
    spec = {t.name: t for t in inputs + outputs}
    if any(spec[n].dtype != np.float32 for n in (in_name, out_name)):
        raise ModelLoadError(f"{in_name!r} and {out_name!r} must be TYPE_FP32")

    common = {
        "name": name, "version": version, "path": path, "kind": kind, "metadata": meta,
        "max_batch_size": config.max_batch_size, "inputs": inputs, "outputs": outputs,
        "value_range": _value_range(meta),
        "queue_delay_us": (config.dynamic_batching.max_queue_delay_microseconds
                           if config.HasField("dynamic_batching") else None),
    }
    if kind == "unconditional":
        latent_dim = _positive_int(meta, "ganserve.latent_dim")
        if spec["z"].dims != (latent_dim,):
            raise ModelLoadError(f"input 'z' has dims {list(spec['z'].dims)} in config.pbtxt but "
                                 f"ganserve.latent_dim is {latent_dim}")
        image_dims = spec["image"].dims
        if len(image_dims) != 3 or image_dims[0] not in (1, 3, 4) or min(image_dims) <= 0:
            raise ModelLoadError(f"output 'image' must have dims [C in (1, 3, 4), H, W], got "
                                 f"{list(image_dims)}")
        return ModelVersion(**common, latent_dim=latent_dim, channels=image_dims[0],
                            image_size=image_dims[1])
    # super-resolution
    lr_dims = spec["lr"].dims
    if len(lr_dims) != 3 or lr_dims[0] != 3:
        raise ModelLoadError(f"input 'lr' must have dims [3, h, w], got {list(lr_dims)}")
    fixed = lr_dims[1] if lr_dims[1] > 0 and lr_dims[1] == lr_dims[2] else None  # Triton's tile shape
    tile = _positive_int(meta, "ganserve.tile_size") if "ganserve.tile_size" in meta else fixed
    if (lr_dims[1] > 0 or lr_dims[2] > 0) and tile != fixed:
        raise ModelLoadError(f"input 'lr' dims {list(lr_dims)} in config.pbtxt do not match the tile size "
                             f"{tile} (ganserve.tile_size)")
    overlap = int(meta.get("ganserve.tile_overlap", "0") or 0) if tile else 0
    if tile and not 0 <= overlap < tile:
        raise ModelLoadError(f"ganserve.tile_overlap {overlap} must be in [0, {tile})")
    input_range = _value_range(meta, key="ganserve.input_range") if "ganserve.input_range" in meta \
        else common["value_range"]
    return ModelVersion(**common, channels=3, scale=_positive_int(meta, "ganserve.scale"),
                        input_range=input_range, tile_size=tile, tile_overlap=overlap)


def _tensor(t: mc.ModelInput | mc.ModelOutput) -> TensorSpec:
    if t.data_type not in _DTYPES:
        raise ModelLoadError(f"tensor {t.name!r} has unsupported type {mc.DataType.Name(t.data_type)}")
    return TensorSpec(name=t.name, dtype=_DTYPES[t.data_type], dims=tuple(int(d) for d in t.dims))


def _check_names(*, config_names: set[str], expected: set[str], what: str) -> None:
    if config_names != expected:
        raise ModelLoadError(f"{what} are {sorted(expected)}, but config.pbtxt declares "
                             f"{sorted(config_names)}")


def _positive_int(meta: Mapping[str, str], key: str) -> int:
    try:
        value = int(meta[key])
    except (KeyError, ValueError):
        raise ModelLoadError(f"ONNX metadata {key} is {meta.get(key)!r}; expected a positive integer") \
            from None
    if value <= 0:
        raise ModelLoadError(f"ONNX metadata {key} is {value}; expected a positive integer")
    return value


def _value_range(meta: Mapping[str, str], *, key: str = "ganserve.value_range") -> tuple[float, float]:
    raw = meta.get(key)
    try:
        lo, hi = (float(x) for x in (raw or "").split(","))
    except ValueError:
        raise ModelLoadError(f"ONNX metadata {key} is {raw!r}; expected 'lo,hi' such as '-1,1'") from None
    if not lo < hi:
        raise ModelLoadError(f"ONNX metadata {key} {raw!r} needs lo < hi")
    return lo, hi
