"""A DCGAN-shaped generator built with onnx.helper (random weights), for benchmarks and checks when
the shipped ``model_repository/dcgan`` is not there. Same interface and cost profile as the real one:
``z [-1, 100] -> image [-1, 1, 28, 28]`` through three transposed convolutions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CONFIG = """name: "{name}"
backend: "onnxruntime"
max_batch_size: 64
input [ {{ name: "z" data_type: TYPE_FP32 dims: [ 100 ] }} ]
output [ {{ name: "image" data_type: TYPE_FP32 dims: [ 1, 28, 28 ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 2000 }}
instance_group [ {{ kind: KIND_GPU }} ]
version_policy: {{ latest {{ num_versions: 1 }} }}
"""


def write_dcgan_like(root: Path, name: str = "dcgan", *, seed: int = 0) -> Path:
    """Writes ``<root>/<name>/{config.pbtxt, 1/model.onnx}``; returns the ONNX path."""
    rng = np.random.default_rng(seed)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * (2.0 / np.prod(shape[1:])) ** 0.5).astype(np.float32)

    inits = [numpy_helper.from_array(np.array([-1, 100, 1, 1], np.int64), "to_map"),
             numpy_helper.from_array(weight(100, 256, 7, 7), "w1"),
             numpy_helper.from_array(np.zeros(256, np.float32), "b1"),
             numpy_helper.from_array(weight(256, 128, 4, 4), "w2"),
             numpy_helper.from_array(np.zeros(128, np.float32), "b2"),
             numpy_helper.from_array(weight(128, 1, 4, 4), "w3"),
             numpy_helper.from_array(np.zeros(1, np.float32), "b3")]
    nodes = [
        helper.make_node("Reshape", ["z", "to_map"], ["x0"]),                              # [B, 100, 1, 1]
        helper.make_node("ConvTranspose", ["x0", "w1", "b1"], ["x1"], kernel_shape=[7, 7]),  # [B, 256, 7, 7]
        helper.make_node("Relu", ["x1"], ["a1"]),
        helper.make_node("ConvTranspose", ["a1", "w2", "b2"], ["x2"], kernel_shape=[4, 4], strides=[2, 2],
                         pads=[1, 1, 1, 1]),                                                 # [B, 128, 14, 14]
        helper.make_node("Relu", ["x2"], ["a2"]),
        helper.make_node("ConvTranspose", ["a2", "w3", "b3"], ["x3"], kernel_shape=[4, 4], strides=[2, 2],
                         pads=[1, 1, 1, 1]),                                                 # [B, 1, 28, 28]
        helper.make_node("Tanh", ["x3"], ["image"]),
    ]
    graph = helper.make_graph(
        nodes, "dcgan_like",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 100])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 28, 28])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {
        "ganserve.kind": "unconditional", "ganserve.family": "dcgan", "ganserve.latent_dim": "100",
        "ganserve.latent_distribution": "normal", "ganserve.value_range": "-1,1", "ganserve.channels": "1",
        "ganserve.image_size": "28", "ganserve.training_data": "none (random weights, benchmark only)",
        "ganserve.training_commit": "unknown"})
    onnx.checker.check_model(model)
    path = root / name / "1" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    (root / name / "config.pbtxt").write_text(CONFIG.format(name=name))
    return path
