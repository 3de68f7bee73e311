"""Test support for the gateway: tiny ONNX models built with onnx.helper (no PyTorch), model
repositories, and a real gateway (uvicorn + grpc.aio) running in a background thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ganserve.serve.app import Gateway
from ganserve.serve.cli import event_loop_factory
from ganserve.serve.settings import Settings

OPSET = 17


def _save(graph: onnx.GraphProto, path: Path, metadata: dict[str, str]) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def write_config(model_dir: Path, text: str) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(text)


def generator_config(name: str, *, latent_dim: int, channels: int, size: int, max_batch_size: int,
                     version_policy: str = "", queue_delay_us: int = 0) -> str:
    return f"""
name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
input [ {{ name: "z" data_type: TYPE_FP32 dims: [ {latent_dim} ] }} ]
output [ {{ name: "image" data_type: TYPE_FP32 dims: [ {channels}, {size}, {size} ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}
instance_group [ {{ kind: KIND_GPU }} ]
{version_policy}
"""


def add_generator(root: Path, name: str, *, version: int = 1, latent_dim: int = 8, channels: int = 1,
                  size: int = 8, weight_seed: int = 0, max_batch_size: int = 16,
                  version_policy: str = "", metadata: dict[str, str] | None = None,
                  config: bool = True) -> Path:
    """``z [-1, latent_dim] -> tanh(z @ W) -> image [-1, C, size, size]`` with contract metadata."""
    pixels = channels * size * size
    weights = np.random.default_rng(weight_seed).standard_normal((latent_dim, pixels)).astype(np.float32)
    weights *= 0.6
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["z", "W"], ["flat"]),
         helper.make_node("Tanh", ["flat"], ["act"]),
         helper.make_node("Reshape", ["act", "shape"], ["image"])],
        "generator",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", latent_dim])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", channels, size, size])],
        initializer=[numpy_helper.from_array(weights, "W"),
                     numpy_helper.from_array(np.array([-1, channels, size, size], np.int64), "shape")])
    meta = {"ganserve.kind": "unconditional", "ganserve.family": "test", "ganserve.latent_dim": str(latent_dim),
            "ganserve.latent_distribution": "normal", "ganserve.value_range": "-1,1",
            "ganserve.channels": str(channels), "ganserve.image_size": str(size),
            "ganserve.training_data": "none (test model)", "ganserve.training_commit": "unknown"}
    meta.update(metadata or {})
    path = root / name / str(version) / "model.onnx"
    _save(graph, path, meta)
    if config:
        write_config(root / name, generator_config(name, latent_dim=latent_dim, channels=channels, size=size,
                                                   max_batch_size=max_batch_size,
                                                   version_policy=version_policy))
    return path


def add_super_resolution(root: Path, name: str, *, scale: int = 2, max_batch_size: int = 4,
                         tile: int | None = None, overlap: int = 0) -> Path:
    """``lr [-1, 3, h, w] -> sr [-1, 3, scale*h, scale*w]`` (nearest-neighbour resize). With ``tile``,
    the config fixes the shape to one tile and the metadata names tile size and overlap (the
    shipped srresnet's layout)."""
    graph = helper.make_graph(
        [helper.make_node("Resize", ["lr", "", "scales"], ["sr"], mode="nearest")],
        "sr",
        [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["batch", 3, "H", "W"])],
        initializer=[numpy_helper.from_array(np.array([1, 1, scale, scale], np.float32), "scales")])
    meta = {"ganserve.kind": "super-resolution", "ganserve.family": "test", "ganserve.scale": str(scale),
            "ganserve.value_range": "0,1", "ganserve.input_range": "0,1", "ganserve.channels": "3"}
    if tile:
        meta |= {"ganserve.tile_size": str(tile), "ganserve.tile_overlap": str(overlap)}
    path = root / name / "1" / "model.onnx"
    _save(graph, path, meta)
    lr, sr = ([tile, tile], [scale * tile, scale * tile]) if tile else ([-1, -1], [-1, -1])
    write_config(root / name, f"""
name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
input [ {{ name: "lr" data_type: TYPE_FP32 dims: [ 3, {lr[0]}, {lr[1]} ] }} ]
output [ {{ name: "sr" data_type: TYPE_FP32 dims: [ 3, {sr[0]}, {sr[1]} ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 0 }}
""")
    return path


def text2img_ensemble_config(name: str, *, encoder: str, generator: str, max_tokens: int, latent_dim: int,
                             channels: int, size: int, max_batch_size: int, embedding: str = "text_embedding",
                             extra: str = "") -> str:
    """The ensemble config of docs/model-contract.md (``embedding``: the name of the tensor between the
    steps, which need not be the components' own; ``extra``: appended inside, e.g. more outputs)."""
    return f"""
name: "{name}"
platform: "ensemble"
max_batch_size: {max_batch_size}
input [ {{ name: "tokens" data_type: TYPE_INT64 dims: [ {max_tokens} ] }},
        {{ name: "z" data_type: TYPE_FP32 dims: [ {latent_dim} ] }} ]
output [ {{ name: "image" data_type: TYPE_FP32 dims: [ {channels}, {size}, {size} ] }} ]
ensemble_scheduling {{ step [
  {{ model_name: "{encoder}" model_version: -1
     input_map {{ key: "tokens" value: "tokens" }}
     output_map {{ key: "embedding" value: "{embedding}" }} }},
  {{ model_name: "{generator}" model_version: -1
     input_map [ {{ key: "z" value: "z" }}, {{ key: "embedding" value: "{embedding}" }} ]
     output_map {{ key: "image" value: "image" }} }}
] }}
{extra}
"""


def add_text2img(root: Path, name: str = "text2img", *, max_tokens: int = 16, embedding_dim: int = 6,
                 latent_dim: int = 8, channels: int = 3, size: int = 8, max_batch_size: int = 16,
                 tokenizer: str = "char-v1", weight_seed: int = 0, ensemble: bool = True,
                 vocabulary: str | None = None) -> None:
    """``<name>_encoder``, ``<name>_generator`` and the ensemble ``<name>`` chaining them, with the
    contract's tensor names, types and metadata (docs/model-contract.md, "Text-conditional models").

    encoder: ``tokens int64 [-1, L] -> Gather(table [V, 4]) -> [-1, L*4] @ W -> tanh -> embedding [-1, E]``;
    generator: ``concat(z, embedding) @ W -> tanh -> image [-1, C, size, size]``.
    """
    from ganserve import text

    rng = np.random.default_rng(weight_seed)
    table = rng.standard_normal((text.VOCAB_SIZE, 4)).astype(np.float32)
    w_text = (rng.standard_normal((max_tokens * 4, embedding_dim)) / np.sqrt(max_tokens)).astype(np.float32)
    encoder = helper.make_graph(
        [helper.make_node("Gather", ["table", "tokens"], ["chars"]),           # [B, L, 4]
         helper.make_node("Reshape", ["chars", "flat_shape"], ["flat"]),       # [B, L*4]
         helper.make_node("MatMul", ["flat", "W"], ["pre"]),                   # [B, E]
         helper.make_node("Tanh", ["pre"], ["embedding"])],
        "text_encoder",
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", max_tokens])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", embedding_dim])],
        initializer=[numpy_helper.from_array(table, "table"), numpy_helper.from_array(w_text, "W"),
                     numpy_helper.from_array(np.array([-1, max_tokens * 4], np.int64), "flat_shape")])
    common = {"ganserve.family": "test", "ganserve.training_data": "none (test model)",
              "ganserve.training_commit": "unknown"}
    _save(encoder, root / f"{name}_encoder" / "1" / "model.onnx", common | {
        "ganserve.kind": "text-encoder", "ganserve.tokenizer": tokenizer,
        "ganserve.max_tokens": str(max_tokens), "ganserve.embedding_dim": str(embedding_dim)}
        | ({} if vocabulary is None else {"ganserve.vocabulary": vocabulary}))
    write_config(root / f"{name}_encoder", f"""
name: "{name}_encoder"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
input [ {{ name: "tokens" data_type: TYPE_INT64 dims: [ {max_tokens} ] }} ]
output [ {{ name: "embedding" data_type: TYPE_FP32 dims: [ {embedding_dim} ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 0 }}
""")

    pixels = channels * size * size
    w_image = (rng.standard_normal((latent_dim + embedding_dim, pixels)) * 0.6).astype(np.float32)
    generator = helper.make_graph(
        [helper.make_node("Concat", ["z", "embedding"], ["zc"], axis=1),      # [B, Z+E]
         helper.make_node("MatMul", ["zc", "W"], ["pre"]),                    # [B, C*H*W]
         helper.make_node("Tanh", ["pre"], ["act"]),
         helper.make_node("Reshape", ["act", "shape"], ["image"])],           # [B, C, H, W]
        "text_generator",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", latent_dim]),
         helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", embedding_dim])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", channels, size, size])],
        initializer=[numpy_helper.from_array(w_image, "W"),
                     numpy_helper.from_array(np.array([-1, channels, size, size], np.int64), "shape")])
    _save(generator, root / f"{name}_generator" / "1" / "model.onnx", common | {
        "ganserve.kind": "text-conditional-generator", "ganserve.latent_dim": str(latent_dim),
        "ganserve.latent_distribution": "normal", "ganserve.value_range": "-1,1",
        "ganserve.channels": str(channels), "ganserve.image_size": str(size),
        "ganserve.embedding_dim": str(embedding_dim)})
    write_config(root / f"{name}_generator", f"""
name: "{name}_generator"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
input [ {{ name: "z" data_type: TYPE_FP32 dims: [ {latent_dim} ] }},
        {{ name: "embedding" data_type: TYPE_FP32 dims: [ {embedding_dim} ] }} ]
output [ {{ name: "image" data_type: TYPE_FP32 dims: [ {channels}, {size}, {size} ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 0 }}
""")
    if ensemble:
        write_config(root / name, text2img_ensemble_config(
            name, encoder=f"{name}_encoder", generator=f"{name}_generator", max_tokens=max_tokens,
            latent_dim=latent_dim, channels=channels, size=size, max_batch_size=max_batch_size))
        (root / name / "1").mkdir(parents=True, exist_ok=True)
        (root / name / "1" / ".gitkeep").write_text("")


def build_repository(root: Path) -> Path:
    """The standard test repository: ``tiny`` (versions 1 and 2, both served) and broken models."""
    policy = "version_policy: { all { } }"
    add_generator(root, "tiny", version=1, weight_seed=1, version_policy=policy)
    add_generator(root, "tiny", version=2, weight_seed=2, version_policy=policy)
    # A model file that is not ONNX at all.
    write_config(root / "garbage", generator_config("garbage", latent_dim=8, channels=1, size=8,
                                                    max_batch_size=4))
    (root / "garbage" / "1").mkdir(parents=True)
    (root / "garbage" / "1" / "model.onnx").write_bytes(b"this is not an ONNX model")
    # A config that is not a valid ModelConfig.
    add_generator(root, "badconfig", config=False)
    write_config(root / "badconfig", "name: 'badconfig' max_batch_size: banana")
    # Valid ONNX, but its metadata lacks the latent size.
    add_generator(root, "nolatent", metadata={"ganserve.latent_dim": ""})
    return root


@dataclass
class RunningGateway:
    gateway: Gateway
    http_url: str
    grpc_target: str

    @property
    def settings(self) -> Settings:
        return self.gateway.settings

    @property
    def admin_url(self) -> str:
        """The admin port's URL (settings that put /metrics or the docs there)."""
        assert self.gateway.admin_port is not None, "nothing is on the admin port"
        return f"http://127.0.0.1:{self.gateway.admin_port}"

    def metrics_text(self) -> str:
        base = self.admin_url if self.settings.metrics_endpoint == "admin" else self.http_url
        return httpx.get(f"{base}/metrics").text


def test_settings(repository: Path, **overrides: object) -> Settings:
    """Settings for a gateway on free loopback ports."""
    values = {"model_repository": repository, "host": "127.0.0.1", "http_port": 0, "grpc_port": 0, "admin_port": 0,
                  "batch_max_queue_delay_ms": 0, "ort_intra_op_threads": 1, "shutdown_grace_s": 5,
                  "log_level": "warning"}
    values.update(overrides)
    return Settings(**values)


test_settings.__test__ = False  # not a test, despite the name


@contextmanager
def running_gateway(settings: Settings, *, wait_ready: bool = True) -> Iterator[RunningGateway]:
    """A real gateway (the same ``Gateway.run`` as ``ganserve serve``) in a background thread."""
    gateway = Gateway(settings)
    failure: list[BaseException] = []

    def main() -> None:
        try:
            with asyncio.Runner(loop_factory=event_loop_factory()) as runner:  # as `ganserve serve`
                runner.run(gateway.run())
        except BaseException as exc:  # noqa: BLE001 - re-raised by the fixture
            failure.append(exc)

    thread = threading.Thread(target=main, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while gateway.grpc_port is None or not gateway.listening.is_set():
        if failure or time.monotonic() > deadline:
            raise RuntimeError(f"gateway did not start: {failure}")
        time.sleep(0.01)
    running = RunningGateway(gateway, f"http://127.0.0.1:{gateway.http_port}", f"127.0.0.1:{gateway.grpc_port}")
    if wait_ready:
        while httpx.get(f"{running.http_url}/readyz").status_code != 200:
            if failure or time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not get ready: {failure}")
            time.sleep(0.02)
    try:
        yield running
    finally:
        gateway.request_stop()
        thread.join(30)
        if thread.is_alive():
            raise RuntimeError("gateway did not stop within 30 s")
        if failure:
            raise failure[0]


def add_slow_super_resolution(root: Path, name: str, *, channels: int = 32, layers: int = 3, scale: int = 2,
                              tile: int = 64, max_batch_size: int = 16) -> Path:
    """A super-resolution model that costs real CPU per pixel (``layers`` 3x3 convolutions of
    ``channels`` channels, then a nearest-neighbour x``scale``), for tests of work, deadlines and
    cancellation: ``lr [-1, 3, h, w] -> sr [-1, 3, s*h, s*w]``, dynamic tile shapes."""
    rng = np.random.default_rng(0)
    nodes, initializers, previous, width = [], [], "lr", 3
    for i in range(layers):
        weight = (rng.standard_normal((channels, width, 3, 3)) / np.sqrt(9 * width)).astype(np.float32)
        initializers.append(numpy_helper.from_array(weight, f"w{i}"))
        nodes += [helper.make_node("Conv", [previous, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        previous, width = f"r{i}", channels
    to_rgb = (rng.standard_normal((3, width, 1, 1)) / np.sqrt(width)).astype(np.float32)
    initializers += [numpy_helper.from_array(to_rgb, "to_rgb"),
                     numpy_helper.from_array(np.array([1, 1, scale, scale], np.float32), "scales")]
    nodes += [helper.make_node("Conv", [previous, "to_rgb"], ["rgb"]),
              helper.make_node("Add", ["rgb", "lr"], ["mixed"]),
              helper.make_node("Resize", ["mixed", "", "scales"], ["sr"], mode="nearest")]
    graph = helper.make_graph(
        nodes, "slow_sr",
        [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["batch", 3, "H", "W"])],
        initializer=initializers)
    meta = {"ganserve.kind": "super-resolution", "ganserve.family": "test", "ganserve.scale": str(scale),
            "ganserve.value_range": "0,1", "ganserve.input_range": "0,1", "ganserve.channels": "3",
            "ganserve.tile_size": str(tile), "ganserve.tile_overlap": "4"}
    path = root / name / "1" / "model.onnx"
    _save(graph, path, meta)
    write_config(root / name, f"""
name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
input [ {{ name: "lr" data_type: TYPE_FP32 dims: [ 3, -1, -1 ] }} ]
output [ {{ name: "sr" data_type: TYPE_FP32 dims: [ 3, -1, -1 ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 0 }}
""")
    return path
