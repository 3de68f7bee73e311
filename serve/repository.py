"""Reads a Triton model repository: configs, versions and ONNX metadata of every model.

Layout and rules are Triton's (``<root>/<model>/config.pbtxt``, numeric version folders, the
``version_policy``); the config is parsed with Triton's own protobuf. What a model *is* (kind, latent
size, value range, geometry) comes from its ONNX ``metadata_props``, per ``docs/model-contract.md``.
A Triton ensemble (``platform: "ensemble"``, no ONNX file) that chains a ``text-encoder`` into a
``text-conditional-generator`` is read as a ``text-conditional`` model whose metadata comes from its
steps; one that chains a ``pyramid-coarse`` model into ``pyramid-level`` models (LAPGAN) is read as an
``unconditional`` model whose z is split over its levels. A model that fails any check becomes a :class:`LoadProblem` with a message saying what to fix;
it never stops the other models from loading (an ensemble whose step did not load is one too).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import onnx
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from ganserve import text

log = logging.getLogger(__name__)

ModelKind = Literal["unconditional", "text-conditional", "super-resolution", "text-encoder",
                    "text-conditional-generator", "pyramid-coarse", "pyramid-level"]
SERVED_KINDS: tuple[ModelKind, ...] = get_args(ModelKind)
ENSEMBLE_PLATFORM = "ensemble"
# ganserve.tokenizer -> prompts -> int64 [n, length] token ids: the tokenizers the gateway can run
TOKENIZERS: dict[str, Callable[..., np.ndarray]] = {text.NAME: text.encode_batch}
KNOWN_TOKENIZERS: tuple[str, ...] = tuple(TOKENIZERS)
DEFAULT_MODEL_FILENAME = "model.onnx"
_DTYPES = {mc.TYPE_FP32: np.dtype(np.float32), mc.TYPE_FP16: np.dtype(np.float16),
           mc.TYPE_INT64: np.dtype(np.int64), mc.TYPE_INT32: np.dtype(np.int32)}
# kind -> (input names, output names) that the contract fixes; the first of each is the main one
CONTRACT_TENSORS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "unconditional": (("z",), ("image",)),
    "super-resolution": (("lr",), ("sr",)),
    "text-encoder": (("tokens",), ("embedding",)),
    "text-conditional-generator": (("z", "embedding"), ("image",)),
    "text-conditional": (("tokens", "z"), ("image",)),  # the ensemble
    "pyramid-coarse": (("z",), ("image",)),           # a pyramid's coarsest level
    "pyramid-level": (("z", "coarse"), ("image",)),   # a finer level: image = up(coarse) + band
}
_GENERATOR_KINDS = ("unconditional", "text-conditional-generator", "pyramid-coarse", "pyramid-level")
_INT_TENSORS = {"tokens"}  # every other contract tensor is TYPE_FP32


class ModelLoadError(Exception):
    """Why one model (version) cannot be served."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as ``config.pbtxt`` declares it; ``dims`` exclude the batch dimension."""

    name: str
    dtype: np.dtype
    dims: tuple[int, ...]


@dataclass(frozen=True)
class EnsembleStep:
    """One step of an ensemble, its model version resolved (Triton's ``model_version: -1`` is the
    latest loaded one). Maps go from the step model's tensor names to the ensemble's tensor names."""

    model: str
    version: int
    kind: ModelKind                     # the step model's kind
    input_map: Mapping[str, str]        # step model input -> ensemble tensor it reads
    output_map: Mapping[str, str]       # step model output -> ensemble tensor it writes


@dataclass(frozen=True)
class ModelVersion:
    """Everything the gateway needs to know about one version of one model."""

    name: str
    version: int
    path: Path                          # the ONNX file (an ensemble: its version folder)
    kind: ModelKind
    max_batch_size: int                 # > 0: dimension 0 is the batch
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    value_range: tuple[float, float] | None  # pixel range of the output (and of SR input); None: no pixels
    queue_delay_us: int | None          # dynamic_batching.max_queue_delay_microseconds, if batching
    latent_dim: int | None = None       # generators
    channels: int | None = None         # output image geometry, when fixed
    image_size: int | None = None
    scale: int | None = None            # super-resolution factor
    input_range: tuple[float, float] | None = None  # super-resolution: range of the lr pixels
    tile_size: int | None = None        # super-resolution: lr tile side (None: whole images)
    tile_overlap: int = 0               # super-resolution: overlap between neighbouring tiles
    tokenizer: str | None = None        # text: the tokenizer of the prompts (ganserve.text.NAME)
    max_tokens: int | None = None       # text: token ids per prompt (L)
    embedding_dim: int | None = None    # text: length of the text embedding (E)
    # text: the words its training captions used, per attribute and value (ganserve.vocabulary), e.g.
    # {"digit": {"7": ("seven", "7")}, "colour": {"red": ("red", "crimson")}}; None when not published
    vocabulary: Mapping[str, Mapping[str, tuple[str, ...]]] | None = None
    steps: tuple[EnsembleStep, ...] = ()  # an ensemble's steps, in an order that runs them; else empty
    # a pyramid ensemble: its z inputs and their lengths, in the order one z of length latent_dim is
    # split into them (coarse level first); else empty (the model's z is its one input 'z')
    latent_inputs: tuple[tuple[str, int], ...] = ()
    # a pyramid ensemble: its outputs holding each level's image, coarse to fine (the last is 'image');
    # empty when it exposes only the final image
    level_outputs: tuple[str, ...] = ()
    # every ganserve.* entry, as stored (an ensemble: its generator's, plus the text entries of its
    # encoder, ganserve.kind = text-conditional and ganserve.steps = "model:version,...")
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def input_name(self) -> str:
        return CONTRACT_TENSORS[self.kind][0][0]

    @property
    def output_name(self) -> str:
        return CONTRACT_TENSORS[self.kind][1][0]

    @property
    def is_ensemble(self) -> bool:
        return bool(self.steps)

    def latent_feed(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """A generator's inputs for z ``[n, latent_dim]``: ``{'z': z}``, or for a pyramid the
        consecutive slices of z under its z inputs' names (``latent_inputs``)."""
        if not self.latent_inputs:
            return {self.input_name: z}
        edges = np.cumsum([0] + [dim for _, dim in self.latent_inputs])
        return {name: np.ascontiguousarray(z[:, a:b])
                for (name, _), a, b in zip(self.latent_inputs, edges[:-1], edges[1:], strict=True)}

    def step_of_kind(self, kind: ModelKind) -> EnsembleStep:
        """The ensemble step whose model is of ``kind`` (a text-conditional ensemble has one
        ``text-encoder`` and one ``text-conditional-generator`` step)."""
        found = [s for s in self.steps if s.kind == kind]
        if len(found) != 1:
            raise LookupError(f"model {self.name!r} has {len(found)} steps of kind {kind!r}")
        return found[0]


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
        problems (a backend that could not load them reports them this way), and less every
        ensemble version that has one of them as a step."""
        failed = dict(failed)
        while True:
            gone = {(v.name, v.version): f"step model {s.model!r} version {s.version} did not load"
                    for vs in self.models.values() for v in vs if (v.name, v.version) not in failed
                    for s in v.steps if (s.model, s.version) in failed}
            if not gone:
                break
            failed.update(gone)
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
    ensembles: list[tuple[str, mc.ModelConfig, list[tuple[int, Path]]]] = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        name = model_dir.name
        try:
            config = read_config(model_dir)
            version_dirs = _selected_versions(model_dir, config)
        except ModelLoadError as exc:
            problems.append(LoadProblem(name, None, str(exc)))
            continue
        if config.platform == ENSEMBLE_PLATFORM:  # read once every model it may use is read
            ensembles.append((name, config, version_dirs))
            continue
        loaded = []
        for version, version_dir in version_dirs:
            try:
                loaded.append(_read_version(name, version, version_dir, config))
            except ModelLoadError as exc:
                problems.append(LoadProblem(name, version, str(exc)))
        if loaded:
            models[name] = tuple(loaded)
    steps_read = dict(models)  # ensembles use these models only (no nested ensembles)
    not_loaded = {p.model: p for p in problems}
    for name, config, version_dirs in ensembles:
        loaded = []
        for version, version_dir in version_dirs:
            try:
                loaded.append(_read_ensemble(name, version, version_dir, config, models=steps_read,
                                             not_loaded=not_loaded,
                                             ensemble_names={e[0] for e in ensembles}))
            except ModelLoadError as exc:
                problems.append(LoadProblem(name, version, str(exc)))
        if loaded:
            models[name] = tuple(loaded)
    models = dict(sorted(models.items()))
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
    if config.platform == ENSEMBLE_PLATFORM:
        if not config.ensemble_scheduling.step:
            raise ModelLoadError("an ensemble needs ensemble_scheduling { step [ ... ] }")
    elif config.backend != "onnxruntime" and config.platform != "onnxruntime_onnx":
        found = config.backend or config.platform or "none"
        raise ModelLoadError(f"backend {found!r} is not served by the gateway (need 'onnxruntime', "
                             f"or platform 'ensemble')")
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
    onnx_kinds = [k for k in get_args(ModelKind) if k != "text-conditional"]
    if kind == "text-conditional":
        raise ModelLoadError("ONNX metadata ganserve.kind is 'text-conditional', which is a Triton ensemble "
                             "(platform 'ensemble') of a 'text-encoder' and a 'text-conditional-generator' "
                             "model, not one ONNX file (docs/model-contract.md)")
    if kind not in onnx_kinds:
        raise ModelLoadError(f"ONNX metadata ganserve.kind is {kind!r}; expected one of {', '.join(onnx_kinds)}")
    if kind not in SERVED_KINDS:
        raise ModelLoadError(f"kind {kind!r} is not served by this gateway version yet")

    inputs = tuple(_tensor(t) for t in config.input)
    outputs = tuple(_tensor(t) for t in config.output)
    in_names, out_names = CONTRACT_TENSORS[kind]
    _check_names(config_names={t.name for t in inputs}, expected=set(in_names), what="inputs")
    _check_names(config_names={t.name for t in outputs}, expected=set(out_names), what="outputs")
    initializers = {t.name for t in proto.graph.initializer}
    _check_names(config_names={t.name for t in inputs}, what="inputs of the ONNX graph",
                 expected={i.name for i in proto.graph.input if i.name not in initializers})
    _check_names(config_names={t.name for t in outputs}, what="outputs of the ONNX graph",
                 expected={o.name for o in proto.graph.output})
    spec = {t.name: t for t in inputs + outputs}
    for tensor in spec.values():
        wanted = np.dtype(np.int64) if tensor.name in _INT_TENSORS else np.dtype(np.float32)
        if tensor.dtype != wanted:
            raise ModelLoadError(f"{tensor.name!r} must be {'TYPE_INT64' if wanted == np.int64 else 'TYPE_FP32'}")

    common = {
        "name": name, "version": version, "path": path, "kind": kind, "metadata": meta,
        "max_batch_size": config.max_batch_size, "inputs": inputs, "outputs": outputs,
        "value_range": None if kind == "text-encoder" else _value_range(meta),
        "queue_delay_us": (config.dynamic_batching.max_queue_delay_microseconds
                           if config.HasField("dynamic_batching") else None),
    }
    if kind == "text-encoder":
        max_tokens = _positive_int(meta, "ganserve.max_tokens")
        embedding_dim = _positive_int(meta, "ganserve.embedding_dim")
        tokenizer = meta.get("ganserve.tokenizer") or ""
        if not tokenizer:
            raise ModelLoadError("ONNX metadata ganserve.tokenizer is missing (e.g. 'char-v1')")
        _check_dims(spec["tokens"], (max_tokens,), key="ganserve.max_tokens")
        _check_dims(spec["embedding"], (embedding_dim,), key="ganserve.embedding_dim")
        return ModelVersion(**common, tokenizer=tokenizer, max_tokens=max_tokens, embedding_dim=embedding_dim,
                            vocabulary=_vocabulary(meta))
    if kind in _GENERATOR_KINDS:
        latent_dim = _positive_int(meta, "ganserve.latent_dim")
        _check_dims(spec["z"], (latent_dim,), key="ganserve.latent_dim")
        embedding_dim = None
        if kind == "text-conditional-generator":
            embedding_dim = _positive_int(meta, "ganserve.embedding_dim")
            _check_dims(spec["embedding"], (embedding_dim,), key="ganserve.embedding_dim")
        image_dims = spec["image"].dims
        if len(image_dims) != 3 or image_dims[0] not in (1, 3, 4) or min(image_dims) <= 0:
            raise ModelLoadError(f"output 'image' must have dims [C in (1, 3, 4), H, W], got "
                                 f"{list(image_dims)}")
        if kind == "pyramid-level":
            c, h, w = image_dims
            if spec["coarse"].dims != (c, h // 2, w // 2) or h % 2 or w % 2:
                raise ModelLoadError(f"input 'coarse' must have dims [C, H/2, W/2] = {[c, h // 2, w // 2]} "
                                     f"(the level doubles the side), got {list(spec['coarse'].dims)}")
        return ModelVersion(**common, latent_dim=latent_dim, channels=image_dims[0],
                            image_size=image_dims[1], embedding_dim=embedding_dim)
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


def _read_ensemble(name: str, version: int, version_dir: Path, config: mc.ModelConfig, *,
                   models: Mapping[str, tuple[ModelVersion, ...]],   # the ONNX models read
                   not_loaded: Mapping[str, LoadProblem],            # models that failed, by name
                   ensemble_names: set[str]) -> ModelVersion:
    """An ensemble version: its steps resolved against ``models`` and ordered so that every tensor is
    written before it is read, each tensor's type and dims the same at both ends, and the chain the
    contract serves (text-encoder -> text-conditional-generator)."""
    inputs = tuple(_tensor(t) for t in config.input)
    outputs = tuple(_tensor(t) for t in config.output)
    pending: list[tuple[EnsembleStep, ModelVersion]] = []
    for number, step in enumerate(config.ensemble_scheduling.step, start=1):
        where = f"step {number} ({step.model_name!r})"
        if step.model_name in ensemble_names:
            raise ModelLoadError(f"{where} is an ensemble; nested ensembles are not served")
        versions = models.get(step.model_name)
        if versions is None:
            why = "did not load (see its own problem)" if step.model_name in not_loaded else                 "is not in the repository"
            raise ModelLoadError(f"{where}: model {step.model_name!r} {why}")
        if step.model_version == -1:
            mv = versions[-1]
        else:
            mv = next((v for v in versions if v.version == step.model_version), None)
            if mv is None:
                raise ModelLoadError(f"{where}: model_version {step.model_version} is not loaded (loaded: "
                                     f"{', '.join(str(v.version) for v in versions)}; -1 is the latest)")
        if config.max_batch_size > mv.max_batch_size:
            raise ModelLoadError(f"max_batch_size {config.max_batch_size} is larger than {where}'s "
                                 f"{mv.max_batch_size}")
        own_inputs, own_outputs = {t.name for t in mv.inputs}, {t.name for t in mv.outputs}
        if set(step.input_map) != own_inputs:
            raise ModelLoadError(f"{where}: input_map keys are {sorted(step.input_map)}, but the model's "
                                 f"inputs are {sorted(own_inputs)}")
        if not step.output_map or not set(step.output_map) <= own_outputs:
            raise ModelLoadError(f"{where}: output_map keys are {sorted(step.output_map)}, but the model's "
                                 f"outputs are {sorted(own_outputs)}")
        pending.append((EnsembleStep(model=mv.name, version=mv.version, kind=mv.kind,
                                     input_map=dict(step.input_map), output_map=dict(step.output_map)), mv))

    # Order the steps by the tensors they need; check both ends of every tensor agree.
    tensors: dict[str, TensorSpec] = {t.name: t for t in inputs}  # ensemble tensor -> its spec
    ordered: list[EnsembleStep] = []
    while pending:
        runnable = [(s, mv) for s, mv in pending if set(s.input_map.values()) <= tensors.keys()]
        if not runnable:
            step, _ = pending[0]
            missing = sorted(set(step.input_map.values()) - tensors.keys())
            raise ModelLoadError(f"step {step.model!r} reads {missing}, which no ensemble input or other "
                                 f"step writes")
        for step, mv in runnable:
            own = {t.name: t for t in mv.inputs + mv.outputs}
            for own_name, tensor in step.input_map.items():
                _same_tensor(tensors[tensor], own[own_name], what=f"tensor {tensor!r} read by step "
                             f"{step.model!r} as {own_name!r}")
            for own_name, tensor in step.output_map.items():
                if tensor in tensors:
                    raise ModelLoadError(f"tensor {tensor!r} is written by step {step.model!r} and also "
                                         f"by an ensemble input or another step")
                tensors[tensor] = TensorSpec(name=tensor, dtype=own[own_name].dtype, dims=own[own_name].dims)
            ordered.append(step)
        pending = [(s, mv) for s, mv in pending if not any(s is o for o in ordered)]
    for out in outputs:
        if out.name not in tensors:
            raise ModelLoadError(f"output {out.name!r} is written by no step")
        _same_tensor(out, tensors[out.name], what=f"output {out.name!r}")

    kinds = sorted(s.kind for s in ordered)
    if kinds == ["text-conditional-generator", "text-encoder"]:
        return _text_ensemble(name, version, version_dir, config, ordered, inputs=inputs, outputs=outputs,
                              models=models)
    if kinds[0] == "pyramid-coarse" and len(kinds) > 1 and set(kinds[1:]) == {"pyramid-level"}:
        return _pyramid_ensemble(name, version, version_dir, config, ordered, inputs=inputs, outputs=outputs,
                                 models=models)
    raise ModelLoadError(f"the steps are models of kinds {kinds}; the gateway serves ensembles of one "
                         f"'text-encoder' and one 'text-conditional-generator', or of one 'pyramid-coarse' "
                         f"and one or more 'pyramid-level' models (docs/model-contract.md)")


def _text_ensemble(name: str, version: int, version_dir: Path, config: mc.ModelConfig,
                   ordered: list[EnsembleStep], *, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
                   models: Mapping[str, tuple[ModelVersion, ...]]) -> ModelVersion:
    """The chain the gateway serves: tokens -> text-encoder -> embedding -> generator (+ z) -> image."""
    in_names, out_names = CONTRACT_TENSORS["text-conditional"]
    _check_names(config_names={t.name for t in inputs}, expected=set(in_names), what="inputs")
    _check_names(config_names={t.name for t in outputs}, expected=set(out_names),
                 what="outputs (only the final image is exposed)")
    encoder, generator = (next(s for s in ordered if s.kind == k) for k in ("text-encoder",
                                                                           "text-conditional-generator"))
    wiring = {"the encoder's 'tokens' is the ensemble input 'tokens'": encoder.input_map["tokens"] == "tokens",
              "the generator's 'z' is the ensemble input 'z'": generator.input_map["z"] == "z",
              "the generator's 'embedding' is the encoder's": generator.input_map["embedding"]
              == encoder.output_map.get("embedding"),
              "the ensemble output 'image' is the generator's": generator.output_map.get("image") == "image"}
    broken = [rule for rule, holds in wiring.items() if not holds]
    if broken:
        raise ModelLoadError(f"the steps are not chained as the contract says: {'; '.join(broken)} is not so")
    enc = next(mv for mv in models[encoder.model] if mv.version == encoder.version)
    gen = next(mv for mv in models[generator.model] if mv.version == generator.version)
    if enc.tokenizer not in KNOWN_TOKENIZERS:
        raise ModelLoadError(f"its text encoder {enc.name!r} uses tokenizer {enc.tokenizer!r}; this gateway "
                             f"knows {', '.join(KNOWN_TOKENIZERS)}")
    meta = dict(gen.metadata) | {
        "ganserve.kind": "text-conditional", "ganserve.tokenizer": enc.tokenizer or "",
        "ganserve.max_tokens": str(enc.max_tokens), "ganserve.embedding_dim": str(enc.embedding_dim),
        "ganserve.steps": ",".join(f"{s.model}:{s.version}" for s in ordered)}
    if "ganserve.vocabulary" in enc.metadata:
        meta["ganserve.vocabulary"] = enc.metadata["ganserve.vocabulary"]
    return ModelVersion(
        name=name, version=version, path=version_dir, kind="text-conditional",
        max_batch_size=config.max_batch_size, inputs=inputs, outputs=outputs, value_range=gen.value_range,
        queue_delay_us=None, latent_dim=gen.latent_dim, channels=gen.channels, image_size=gen.image_size,
        tokenizer=enc.tokenizer, max_tokens=enc.max_tokens, embedding_dim=enc.embedding_dim,
        vocabulary=enc.vocabulary, steps=tuple(ordered), metadata=meta)


def _pyramid_ensemble(name: str, version: int, version_dir: Path, config: mc.ModelConfig,
                      ordered: list[EnsembleStep], *, inputs: tuple[TensorSpec, ...],
                      outputs: tuple[TensorSpec, ...], models: Mapping[str, tuple[ModelVersion, ...]]) -> ModelVersion:
    """A Laplacian pyramid (LAPGAN): ``pyramid-coarse`` (z -> image), then each ``pyramid-level`` (z,
    coarse -> image of twice the side) reading the previous level's image; every step's z is an
    ensemble input of its own, the last level's image is the output ``image``. Served as an
    ``unconditional`` model whose z is the concatenation of the levels' z, coarse level first."""
    step_models = [next(mv for mv in models[s.model] if mv.version == s.version) for s in ordered]
    chain = [s for s in ordered if s.kind == "pyramid-coarse"]  # then each level reading the last one's image
    rest = [s for s in ordered if s.kind == "pyramid-level"]
    while rest:
        written = chain[-1].output_map.get("image")
        following = [s for s in rest if s.input_map["coarse"] == written]
        if len(following) != 1:
            raise ModelLoadError(f"the pyramid is not one chain: {len(following)} level(s) read step "
                                 f"{chain[-1].model!r}'s image {written!r} as their 'coarse'")
        chain.append(following[0])
        rest.remove(following[0])
    by_model = {(mv.name, mv.version): mv for mv in step_models}
    levels = [by_model[s.model, s.version] for s in chain]
    input_names = {t.name for t in inputs}
    z_inputs = [s.input_map["z"] for s in chain]
    wiring = {"every level's 'z' is an ensemble input of its own": set(z_inputs) == input_names
              and len(set(z_inputs)) == len(z_inputs),
              "the last level's 'image' is the ensemble output 'image'": chain[-1].output_map.get("image") == "image"}
    broken = [rule for rule, holds in wiring.items() if not holds]
    if broken:
        raise ModelLoadError(f"the pyramid's steps are not wired as the contract says: {'; '.join(broken)} is "
                             f"not so")
    images = [s.output_map.get("image") for s in chain]
    exposed = {t.name for t in outputs}
    if not exposed <= set(images):
        raise ModelLoadError(f"outputs {sorted(exposed - set(images))} are no level's image")
    final = levels[-1]
    latent = tuple((s.input_map["z"], mv.latent_dim) for s, mv in zip(chain, levels, strict=True))
    meta = {k: v for k, v in final.metadata.items() if k != "ganserve.level"} | {
        "ganserve.kind": "unconditional", "ganserve.latent_dim": str(sum(d for _, d in latent)),
        "ganserve.latent_split": ",".join(f"{n}:{d}" for n, d in latent),
        "ganserve.levels": ",".join(f"{i}:{mv.image_size}" for i, mv in zip(images, levels, strict=True)),
        "ganserve.steps": ",".join(f"{s.model}:{s.version}" for s in chain)}
    return ModelVersion(
        name=name, version=version, path=version_dir, kind="unconditional", max_batch_size=config.max_batch_size,
        inputs=inputs, outputs=outputs, value_range=final.value_range, queue_delay_us=None,
        latent_dim=sum(d for _, d in latent), channels=final.channels, image_size=final.image_size,
        steps=tuple(chain), latent_inputs=latent,
        level_outputs=tuple(images) if set(images) <= exposed else (), metadata=meta)


def _vocabulary(meta: Mapping[str, str]) -> dict[str, dict[str, tuple[str, ...]]] | None:
    """``ganserve.vocabulary``: JSON ``{attribute: {value: [words]}}``, or None when absent."""
    raw = meta.get("ganserve.vocabulary")
    if raw is None:
        return None
    try:
        parsed = json.loads(raw)
        vocabulary = {str(attribute): {str(value): tuple(str(w).lower() for w in words)
                                       for value, words in values.items()}
                      for attribute, values in parsed.items()}
    except (ValueError, AttributeError, TypeError):
        raise ModelLoadError("ONNX metadata ganserve.vocabulary is not JSON of the form "
                             "{attribute: {value: [words]}}") from None
    if not vocabulary or any(not values or any(not words for words in values.values())
                             for values in vocabulary.values()):
        raise ModelLoadError("ONNX metadata ganserve.vocabulary has an attribute or value without words")
    return vocabulary


def _same_tensor(a: TensorSpec, b: TensorSpec, *, what: str) -> None:
    """Both ends of an ensemble tensor: same type, same dims (-1 on either side matches any size)."""
    if a.dtype != b.dtype:
        raise ModelLoadError(f"{what}: type {a.dtype} at one end, {b.dtype} at the other")
    if len(a.dims) != len(b.dims) or any(x != y and -1 not in (x, y) for x, y in zip(a.dims, b.dims)):
        raise ModelLoadError(f"{what}: dims {list(a.dims)} at one end, {list(b.dims)} at the other")


def _check_dims(tensor: TensorSpec, dims: tuple[int, ...], *, key: str) -> None:
    if tensor.dims != dims:
        raise ModelLoadError(f"{tensor.name!r} has dims {list(tensor.dims)} in config.pbtxt but {key} "
                             f"is {dims[0]}")


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
