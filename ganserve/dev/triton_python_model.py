"""The Triton python-backend model of the CPU test server (``ganserve triton-cpu``): it stands in for
Triton's onnxruntime backend and runs the same ONNX file with ONNX Runtime on the CPU.

:func:`ganserve.dev.triton_cpu.derive_cpu_repository` copies this file as ``<model>/<version>/model.py``
and sets two ``parameters`` in the model's ``config.pbtxt``: ``onnx_file`` (the ONNX file next to it)
and ``intra_op_threads``. It runs inside Triton's python-backend stub, in the models' own environment
(``.venv-triton``: ``numpy<2``, ``onnxruntime``), where ``triton_python_backend_utils`` exists; nothing
in ganserve imports it.

Requests Triton's dynamic batcher hands over together are run as one ONNX Runtime batch (grouped by
input shape), as the onnxruntime backend would.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], params["onnx_file"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "1"))
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests):
        arrays = [{n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs}
                  for r in requests]
        groups = {}
        for i, a in enumerate(arrays):
            groups.setdefault(tuple(a[n].shape[1:] for n in self.inputs), []).append(i)
        responses = [None] * len(requests)
        for members in groups.values():
            try:
                feed = {n: np.concatenate([arrays[i][n] for i in members]) for n in self.inputs}
                results = self.session.run(self.outputs, feed)
            except Exception as exc:  # noqa: BLE001 - reported to the client as a Triton error
                for i in members:
                    responses[i] = pb_utils.InferenceResponse(
                        output_tensors=[], error=pb_utils.TritonError(f"ONNX Runtime: {exc}"))
                continue
            start = 0
            for i in members:
                rows = len(arrays[i][self.inputs[0]])
                responses[i] = pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor(name, np.ascontiguousarray(out[start:start + rows]))
                    for name, out in zip(self.outputs, results)])
                start += rows
        return responses
