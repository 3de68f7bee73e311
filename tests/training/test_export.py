"""ganserve.training.export: checkpoint -> ONNX + config.pbtxt, for each family (DCGAN; SRResNet with dynamic h/w and
the --fixed-tile layout; GAN-INT-CLS as encoder, generator and ensemble), with the parity check."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from google.protobuf import text_format
from PIL import Image
from tritonclient.grpc import model_config_pb2 as mc

from ganserve import text
from ganserve.errors import UsageError
from ganserve.training.checkpoint import load_generator
from ganserve.training.export import PARITY_TOLERANCE, export_checkpoint, read_config
from ganserve.training.presets import preset


@pytest.fixture(scope="module")
def exported(dcgan_tiny):
    tmp = dcgan_tiny
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


def test_export_writes_encoder_generator_and_ensemble(t2i_run):
    import onnx
    import onnxruntime as ort

    from ganserve.training.checkpoint import load_generator
    from ganserve.training.export import PARITY_TOLERANCE, export_checkpoint_parts, read_config

    tmp, _ = t2i_run
    tiny = preset("text2img-tiny").model
    ckpt = tmp / "run" / "checkpoint.pt"
    results = export_checkpoint_parts(ckpt, repository=tmp / "repo", name="t2i", max_batch_size=8)
    assert set(results) == {"t2i", "t2i_encoder", "t2i_generator"}
    for part in ("t2i_encoder", "t2i_generator"):
        assert results[part].parity_max_abs_diff <= PARITY_TOLERANCE
        assert results[part].size_bytes < 25 * 1024 * 1024
    enc_meta = {p.key: p.value for p in onnx.load(str(results["t2i_encoder"].onnx_path)).metadata_props}
    gen_meta = {p.key: p.value for p in onnx.load(str(results["t2i_generator"].onnx_path)).metadata_props}
    assert enc_meta["ganserve.kind"] == "text-encoder" and enc_meta["ganserve.tokenizer"] == "char-v1"
    assert enc_meta["ganserve.max_tokens"] == "64" and enc_meta["ganserve.embedding_dim"] == str(tiny.embedding_dim)
    vocabulary = json.loads(enc_meta["ganserve.vocabulary"])  # the colour sets' caption words
    assert vocabulary["digit"]["7"] == ["seven", "7"] and "crimson" in vocabulary["colour"]["red"]
    assert gen_meta["ganserve.kind"] == "text-conditional-generator"
    for key in ("latent_dim", "value_range", "channels", "image_size", "embedding_dim", "training_steps",
                "training_commit", "config", "training_data"):
        assert f"ganserve.{key}" in gen_meta
    # the ensemble: tokens + z -> image only, steps encoder -> generator, an (almost) empty 1/
    ens = read_config(tmp / "repo" / "t2i" / "config.pbtxt")
    assert ens.platform == "ensemble" and ens.max_batch_size == 8
    assert [(i.name, list(i.dims)) for i in ens.input] == [("tokens", [64]), ("z", [tiny.latent_dim])]
    assert [(o.name, list(o.dims)) for o in ens.output] == [("image", [3, 8, 8])]
    steps = ens.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["t2i_encoder", "t2i_generator"]
    assert dict(steps[1].input_map) == {"z": "z", "embedding": "embedding"}
    assert [p.name for p in (tmp / "repo" / "t2i" / "1").iterdir()] == ["README.md"]
    enc_cfg = read_config(tmp / "repo" / "t2i_encoder" / "config.pbtxt")
    assert enc_cfg.input[0].data_type == 9  # TYPE_INT64
    # the two ONNX models chained like the ensemble == the PyTorch generator on tokens
    enc = ort.InferenceSession(str(results["t2i_encoder"].onnx_path), providers=["CPUExecutionProvider"])
    gen = ort.InferenceSession(str(results["t2i_generator"].onnx_path), providers=["CPUExecutionProvider"])
    tokens = text.encode_batch(["", "a red seven", "zz" * 50, "ünknown ✓"])
    z = np.random.default_rng(0).standard_normal((4, tiny.latent_dim), dtype=np.float32)
    (emb,) = enc.run(["embedding"], {"tokens": tokens})
    (img,) = gen.run(["image"], {"z": z, "embedding": emb})
    with torch.no_grad():
        expected = load_generator(ckpt).model(torch.from_numpy(z), torch.from_numpy(tokens)).numpy()
    assert np.isfinite(emb).all() and np.abs(img - expected).max() < 1e-4


def test_onnx_has_dynamic_h_w_and_sr_metadata(sr_exported):
    _, result = sr_exported
    model = onnx.load(str(result.onnx_path))
    assert [i.name for i in model.graph.input] == ["lr"] and [o.name for o in model.graph.output] == ["sr"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] == "batch" and dims[1] == 3 and isinstance(dims[2], str) and isinstance(dims[3], str)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["ganserve.kind"] == "super-resolution" and meta["ganserve.family"] == "srresnet"
    assert meta["ganserve.scale"] == "2" and meta["ganserve.value_range"] == "0,1"
    assert meta["ganserve.input_range"] == "0,1"
    assert meta["ganserve.tile_size"] == "64" and meta["ganserve.tile_overlap"] == "8"


@pytest.mark.parametrize("batch,h,w", [(1, 13, 7), (3, 31, 17), (2, 64, 64), (1, 5, 97)])
def test_export_parity_at_odd_sizes(sr_exported, batch, h, w):
    ckpt, result = sr_exported
    assert result.parity_max_abs_diff <= PARITY_TOLERANCE
    G = load_generator(ckpt).model
    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    lr = np.random.default_rng(h * w).random((batch, 3, h, w), dtype=np.float32)
    (sr,) = session.run(["sr"], {"lr": lr})
    assert sr.shape == (batch, 3, 2 * h, 2 * w)
    with torch.no_grad():
        expected = G(torch.from_numpy(lr)).numpy()
    assert np.abs(sr - expected).max() <= PARITY_TOLERANCE
    assert sr.min() >= 0 and sr.max() <= 1


def test_config_pbtxt_takes_any_tile_size(sr_exported):
    """h and w stay dynamic in config.pbtxt (a request may choose its tile size); the default tile is
    the ONNX metadata's."""
    _, result = sr_exported
    config = read_config(result.config_path)
    assert config.max_batch_size == 8 and config.backend == "onnxruntime"
    assert [t.name for t in config.input] == ["lr"] and list(config.input[0].dims) == [3, -1, -1]
    assert [t.name for t in config.output] == ["sr"] and list(config.output[0].dims) == [3, -1, -1]
    assert "64x64 LR tiles" in result.config_path.read_text()


def test_fixed_tile_export_fixes_the_shape_and_the_gateway_keeps_to_it(sr_exported, tmp_path):
    """--fixed-tile: config.pbtxt fixes lr/sr to one tile (the ONNX file is the same); the gateway
    then edge-pads a small image up to that tile, gives the same pixels as with the dynamic config,
    and refuses another tile_size."""
    import asyncio
    import io

    from ganserve.serve.errors import InvalidArgument
    from ganserve.serve.runtime import Runtime
    from ganserve.serve.settings import Settings

    ckpt, dynamic = sr_exported
    fixed = export_checkpoint(ckpt, repository=tmp_path, name="srresnet", max_batch_size=8, fixed_tile=True)
    config = read_config(fixed.config_path)
    assert list(config.input[0].dims) == [3, 64, 64] and list(config.output[0].dims) == [3, 128, 128]
    assert "--fixed-tile" in fixed.config_path.read_text()
    photo = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(photo, "PNG")

    async def upscale(repository, **kwargs):
        # memory_budget_mb: the gateway's footprint is its process's peak RSS, here the whole test run's
        runtime = Runtime(Settings(model_repository=repository, memory_budget_mb=65536, ort_intra_op_threads=1))
        await runtime.load()
        try:
            return await runtime.service.upscale(image=photo.getvalue(), **kwargs)
        finally:
            await runtime.close()

    def pixels(result):
        return np.asarray(Image.open(io.BytesIO(result.image.data)))

    on_fixed = asyncio.run(upscale(tmp_path))
    assert pixels(on_fixed).shape == (40, 60, 3)
    assert np.array_equal(pixels(on_fixed), pixels(asyncio.run(upscale(dynamic.config_path.parent.parent))))
    with pytest.raises(InvalidArgument, match="takes only 64x64 tiles"):
        asyncio.run(upscale(tmp_path, tile_size=32))


def test_fixed_tile_is_for_super_resolution_only():
    from ganserve.training.export import with_fixed_tile
    from ganserve.training.families.base import ExportSpec

    with pytest.raises(UsageError, match="super-resolution"):
        with_fixed_tile(ExportSpec(kind="unconditional", inputs={"z": ("batch", 4)}, outputs={}, metadata={}))
