import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from ganserve.errors import UsageError
from tests.training.helpers import tiny_config
from training.checkpoint import load_generator
from training.export import PARITY_TOLERANCE, export_checkpoint
from training.loop import Trainer


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    trainer = Trainer(tiny_config("train.steps=5"), out_dir=tmp / "run")
    trainer.fit()
    trainer.save_checkpoint()
    result = export_checkpoint(tmp / "run" / "checkpoint.pt", repository=tmp / "repo", name="tiny", version=3,
                               max_batch_size=32, queue_delay_us=500)
    return tmp, result


def test_repository_layout(exported):
    tmp, result = exported
    assert result.onnx_path == tmp / "repo" / "tiny" / "3" / "model.onnx"
    assert result.config_path == tmp / "repo" / "tiny" / "config.pbtxt"


def test_onnx_names_metadata_and_opset(exported):
    _, result = exported
    model = onnx.load(str(result.onnx_path))
    assert [i.name for i in model.graph.input] == ["z"]
    assert [o.name for o in model.graph.output] == ["image"]
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["ganserve.kind"] == "unconditional"
    assert meta["ganserve.latent_dim"] == "16"
    assert meta["ganserve.value_range"] == "-1,1"
    assert meta["ganserve.training_steps"] == "5"
    assert meta["ganserve.family"] == "dcgan"
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 16


def test_dynamic_batch_and_parity(exported):
    tmp, result = exported
    assert result.parity_max_abs_diff <= PARITY_TOLERANCE
    generator = load_generator(tmp / "run" / "checkpoint.pt").model
    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    for batch in (1, 7, 32):
        z = np.random.default_rng(batch).standard_normal((batch, 16), dtype=np.float32)
        (out,) = session.run(["image"], {"z": z})
        assert out.shape == (batch, 1, 8, 8)
        with torch.no_grad():
            expected = generator(torch.from_numpy(z)).numpy()
        assert np.abs(out - expected).max() <= PARITY_TOLERANCE


def test_config_parses_with_tritons_protobuf_and_matches_onnx(exported):
    _, result = exported
    text = result.config_path.read_text()
    config = text_format.Parse(text, mc.ModelConfig())
    assert config.name == "tiny" and config.backend == "onnxruntime"
    assert config.max_batch_size == 32
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert config.version_policy.latest.num_versions == 1
    assert "tensorrt" in text  # the accelerator option is documented in the file
    model = onnx.load(str(result.onnx_path))
    for tensors, graph_side in ((config.input, model.graph.input), (config.output, model.graph.output)):
        assert [t.name for t in tensors] == [g.name for g in graph_side]
        for t, g in zip(tensors, graph_side):
            assert t.data_type == mc.TYPE_FP32
            onnx_dims = [d.dim_value for d in g.type.tensor_type.shape.dim[1:]]  # without the batch
            assert list(t.dims) == onnx_dims


def test_bad_version_is_a_usage_error(exported):
    tmp, _ = exported
    with pytest.raises(UsageError, match="version"):
        export_checkpoint(tmp / "run" / "checkpoint.pt", repository=tmp / "repo", name="tiny", version=0)


