"""The committed model_repository/ is what Triton and the gateway load: check every model in it."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

ROOT = Path(__file__).resolve().parents[1]
REPO = ROOT / "model_repository"
KINDS = {"unconditional", "text-conditional", "super-resolution", "text-encoder", "text-conditional-generator",
         "pyramid-coarse", "pyramid-level"}
ONNX_TYPES = {mc.TYPE_FP32: onnx.TensorProto.FLOAT, mc.TYPE_INT64: onnx.TensorProto.INT64,
              mc.TYPE_INT32: onnx.TensorProto.INT32}


def model_dirs():
    return sorted(p for p in REPO.iterdir() if (p / "config.pbtxt").is_file()) if REPO.is_dir() else []


def test_repository_ships_the_dcgan():
    assert (REPO / "dcgan" / "config.pbtxt").is_file()
    assert (REPO / "dcgan" / "1" / "model.onnx").is_file()


@pytest.mark.parametrize("model_dir", model_dirs(), ids=lambda p: p.name)
def test_model_directory_is_triton_valid(model_dir):
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())
    assert config.name == model_dir.name
    versions = [p for p in model_dir.iterdir() if p.is_dir()]
    assert versions and all(p.name.isdigit() and int(p.name) > 0 for p in versions)
    card = model_dir / "README.md"
    assert card.is_file() and "ganserve train" in card.read_text()  # the reproducing command
    if config.platform == "ensemble" or config.backend == "":
        return
    assert config.backend == "onnxruntime"
    for version in versions:
        path = version / "model.onnx"
        assert path.stat().st_size < 25 * 1024 * 1024
        model = onnx.load(str(path))
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta.get("ganserve.kind") in KINDS
        assert meta.get("ganserve.training_commit") not in (None, "", "unknown")
        for tensors, side in ((config.input, model.graph.input), (config.output, model.graph.output)):
            assert [t.name for t in tensors] == [g.name for g in side]
            for t, g in zip(tensors, side):
                assert ONNX_TYPES[t.data_type] == g.type.tensor_type.elem_type
                dims = g.type.tensor_type.shape.dim
                assert dims[0].dim_param, "the batch axis must be dynamic"
                for c, d in zip(t.dims, dims[1:]):
                    assert c == d.dim_value or d.dim_param  # fixed dims agree; dynamic ONNX dims accept any


def test_shipped_dcgan_draws_every_digit():
    import onnxruntime as ort
    import torch

    from ganserve.training.metrics.classifiers import load_classifier

    session = ort.InferenceSession(str(REPO / "dcgan" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    z = np.random.default_rng(0).standard_normal((1000, 100), dtype=np.float32)
    (images,) = session.run(["image"], {"z": z})
    assert images.shape == (1000, 1, 28, 28)
    assert images.min() >= -1 - 1e-5 and images.max() <= 1 + 1e-5  # tanh, up to float rounding
    with torch.no_grad():
        pred = load_classifier()(torch.from_numpy(images)).argmax(1).numpy()
    shares = np.bincount(pred, minlength=10) / len(pred)
    assert shares.min() >= 0.03, shares  # every digit is drawn (the card reports 10k-sample figures)


def test_shipped_text2img_follows_held_out_prompts():
    """The committed ONNX pair draws the digit and colour a held-out phrasing asks for (seen
    combinations, 3 images each; the card reports the full evaluation)."""
    import onnxruntime as ort
    import torch

    from ganserve import text
    from ganserve.training.data.captions import heldout_prompts, seen_combos
    from ganserve.training.data.images import to_uint8
    from ganserve.training.metrics.classifiers import classify, load_attribute_classifier

    enc = ort.InferenceSession(str(REPO / "text2img_encoder" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    gen = ort.InferenceSession(str(REPO / "text2img_generator" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    combos = seen_combos()
    prompts = [p for d, c in combos for p in heldout_prompts(d, c, 3, seed=5)]
    (emb,) = enc.run(["embedding"], {"tokens": text.encode_batch(prompts)})
    z = np.random.default_rng(0).standard_normal((len(prompts), 100), dtype=np.float32)
    (images,) = gen.run(["image"], {"z": z, "embedding": emb})
    _, digit, colour = classify(load_attribute_classifier(), to_uint8(torch.from_numpy(images)))
    want_d = torch.tensor([d for d, _ in combos for _ in range(3)])
    want_c = torch.tensor([c for _, c in combos for _ in range(3)])
    assert (digit == want_d).float().mean() >= 0.85 and (colour == want_c).float().mean() >= 0.9


@pytest.mark.skipif(not (REPO / "srgan").is_dir(), reason="srgan is not shipped")
def test_shipped_srgan_is_sharper_than_srresnet_and_beats_bicubic():
    """On a held-out photo (chelsea, a 160x160 crop): the SRGAN's output has more high-frequency energy
    than the SRResNet's, and still scores above bicubic on PSNR (the card has the full figures)."""
    from ganserve.training.data.sr import bicubic_resize, make_pair
    from ganserve.training.metrics.super_resolution import held_out_images, load_upscaler, psnr_y, sharpness_y

    images, _ = held_out_images(None, None)
    hr = dict(images)["chelsea"][60:220, 200:360]
    pair = make_pair("chelsea", hr, 4)
    bicubic = bicubic_resize(pair.lr, pair.hr.shape[:2])
    scores = {}
    for name in ("srresnet", "srgan"):
        sr = load_upscaler(REPO / name / "1" / "model.onnx")[0](pair.lr)
        scores[name] = (psnr_y(sr, pair.hr, border=4), sharpness_y(sr, pair.hr, border=4))
    assert scores["srgan"][1] > 1.2 * scores["srresnet"][1], scores
    assert scores["srgan"][0] > psnr_y(bicubic, pair.hr, border=4), scores
