"""Text-to-image (GAN-INT-CLS): captioned data, the char-CNN-RNN encoder, the matching-aware loss,
training through the one loop, and the three-part export (encoder, generator, ensemble)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ganserve import text
from ganserve.errors import UsageError
from training.callbacks import default_callbacks
from training.config import apply_overrides, preset, validate
from training.data.captions import (
    heldout_prompts,
)
from training.families import get_family, mismatched_indices
from training.loop import Trainer
from training.models.gan_int_cls import ConditionalDiscriminator, TextToImageGenerator
from training.text_encoder import TextEncoder, TextEncoderConfig, joint_embedding_loss, pretrain, save_encoder


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, digits_set):
    """A pre-trained (2 steps) tiny encoder and a 4-step GAN-INT-CLS run on colour digits."""
    tmp = tmp_path_factory.mktemp("t2i")
    cfg = preset("text2img-tiny")
    family = get_family(cfg)
    enc = pretrain(digits_set, family.encoder_config(), steps=2, batch_size=16, log=lambda *_: None)
    save_encoder(enc, tmp / "enc.pt")
    cfg = apply_overrides(cfg, [f"train.text_encoder={tmp / 'enc.pt'}", "train.steps=4", "data.limit=400"])
    trainer = Trainer(cfg, out_dir=tmp / "run", callbacks=default_callbacks(tmp / "run", progress=False))
    trainer.fit()
    trainer.save_checkpoint()
    return tmp, trainer


# ---------------------------------------------------------------- text encoder
def test_encoder_takes_any_text():
    torch.manual_seed(0)
    enc = TextEncoder(TextEncoderConfig(width=16, embedding_dim=8)).eval()
    long = "a red seven " * 40
    prompts = ["", "   ", long, "ünïcödé ✓ 漢字 emoji 🙂", "a red seven"]
    tokens = torch.from_numpy(text.encode_batch(prompts))
    assert tokens.shape == (5, 64) and (tokens[0] == 0).all() and (tokens[3] == 1).any()
    with torch.no_grad():
        e = enc(tokens)
    assert e.shape == (5, 8) and torch.isfinite(e).all()
    assert torch.allclose(e[0], e[1])                                       # blank = all padding
    cut = torch.from_numpy(text.encode_batch([long[:64]]))
    assert torch.equal(tokens[2:3], cut) and torch.allclose(enc(cut), e[2:3])  # cut to L by the tokenizer
    # padding is masked out: trailing padding does not change the embedding of the text before it
    with torch.no_grad():
        assert not torch.allclose(e[4], enc(torch.from_numpy(text.encode_batch(["a red sevens"])))[0])


def test_joint_embedding_loss_prefers_matching_classes():
    classes = torch.tensor([0, 1, 2, 0])
    img = torch.eye(4)[[0, 1, 2, 0]]
    good = joint_embedding_loss(img, img.clone(), classes)
    bad = joint_embedding_loss(img, img[[1, 2, 0, 1]], classes)
    assert good < bad


# ---------------------------------------------------------------- networks and loss
def test_shapes():
    cfg = preset("text2img-colour-mnist").model
    G, D = TextToImageGenerator(cfg), ConditionalDiscriminator(cfg)
    z, tokens = torch.randn(3, cfg.latent_dim), torch.from_numpy(text.encode_batch(["a red 7", "", "x" * 99]))
    img = G(z, tokens)
    assert img.shape == (3, 3, 28, 28) and img.abs().max() <= 1
    assert torch.allclose(img, G(z, G.embed(tokens)))   # tokens or embeddings
    assert D(img, G.embed(tokens)).shape == (3,)
    with pytest.raises(ValueError, match="embedding"):
        D(img, torch.randn(3, cfg.embedding_dim + 1))
    assert not any(p.requires_grad for p in G.encoder.parameters())  # frozen


def test_mismatched_indices_pair_every_row_with_another_class():
    gen = torch.Generator().manual_seed(0)
    classes = torch.tensor([0, 0, 1, 2, 2, 2, 3, 1])
    for _ in range(20):
        j = mismatched_indices(classes, gen=gen)
        assert (j != torch.arange(8)).all() and (classes[j] != classes).all()
    same = mismatched_indices(torch.zeros(4, dtype=torch.long), gen=gen)  # no other class: still j != i
    assert (same != torch.arange(4)).all()


def test_discriminator_sees_the_mismatched_pairs(tiny_run):
    _, trainer = tiny_run
    fam, calls = trainer.family, []

    def spy(x, e):
        calls.append((x.clone(), e.clone()))
        return trainer.D(x, e)

    batch = fam.batch(trainer.data, torch.arange(16), torch.device("cpu"))
    out = fam.d_step(G=trainer.G, critic=spy, batch=batch, gen=torch.Generator().manual_seed(1), keep_graph=False)
    (_, right), (real_w, wrong), (real, right2) = calls   # {fake,right}, {real,wrong}, {real,right}
    assert torch.equal(real, batch["images"]) and torch.equal(real_w, batch["images"])
    assert torch.equal(right, right2)
    w = out.carry["wrong_idx"]
    assert torch.equal(wrong, right[w]) and (batch["classes"][w] != batch["classes"]).all()
    assert out.fake_logits.shape == (32,)  # fake and wrong-text logits: the loss's mean weights each 1/2
    loss = trainer.adv.d_loss(out.real_logits, out.fake_logits)
    # the loss really depends on the wrong-text term: with the right text in its place it changes
    with torch.no_grad():
        swapped = torch.cat([out.fake_logits[:16], trainer.D(real, right)])
    assert not torch.isclose(loss, trainer.adv.d_loss(out.real_logits, swapped))


def test_generator_loss_includes_interpolated_texts(tiny_run):
    _, trainer = tiny_run
    fam = trainer.family
    batch = fam.batch(trainer.data, torch.arange(16), torch.device("cpu"))
    out = fam.d_step(G=trainer.G, critic=trainer.D, batch=batch, gen=torch.Generator().manual_seed(1),
                     keep_graph=True)
    _, stats = fam.g_loss(G=trainer.G, critic=trainer.D, batch=batch, adv=trainer.adv,
                          gen=torch.Generator().manual_seed(2), carry=out.carry)
    assert "loss_int" in stats and torch.isfinite(stats["loss_int"])


def test_gan_int_cls_needs_a_pretrained_encoder(tmp_path):
    cfg = validate(apply_overrides(preset("text2img-tiny"), ["data.limit=64"]))
    with pytest.raises(UsageError, match="train-text-encoder"):
        Trainer(cfg, out_dir=tmp_path)
    with pytest.raises(UsageError, match="cannot train on"):
        validate(apply_overrides(preset("text2img-tiny"), ["data.name=digits"]))


# ---------------------------------------------------------------- training and export
def test_training_runs_through_the_loop_and_resumes(tiny_run):
    tmp, trainer = tiny_run
    rows = [json.loads(line) for line in (tmp / "run" / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 4 and "loss_int" in rows[-1]
    assert (tmp / "run" / "samples.png").is_file()
    # the checkpoint carries the frozen encoder: a resumed trainer gets exactly the same one
    again = Trainer(trainer.cfg, out_dir=tmp / "run")
    again.load_checkpoint(tmp / "run" / "checkpoint.pt")
    for a, b in zip(again.G.encoder.state_dict().values(), trainer.G.encoder.state_dict().values()):
        assert torch.equal(a, b)


def test_export_writes_encoder_generator_and_ensemble(tiny_run):
    import onnx
    import onnxruntime as ort

    from training.checkpoint import load_generator
    from training.export import PARITY_TOLERANCE, export_checkpoint_parts, read_config

    tmp, _ = tiny_run
    ckpt = tmp / "run" / "checkpoint.pt"
    results = export_checkpoint_parts(ckpt, repository=tmp / "repo", name="t2i", max_batch_size=8)
    assert set(results) == {"t2i", "t2i_encoder", "t2i_generator"}
    for part in ("t2i_encoder", "t2i_generator"):
        assert results[part].parity_max_abs_diff <= PARITY_TOLERANCE
        assert results[part].size_bytes < 25 * 1024 * 1024
    enc_meta = {p.key: p.value for p in onnx.load(str(results["t2i_encoder"].onnx_path)).metadata_props}
    gen_meta = {p.key: p.value for p in onnx.load(str(results["t2i_generator"].onnx_path)).metadata_props}
    assert enc_meta["ganserve.kind"] == "text-encoder" and enc_meta["ganserve.tokenizer"] == "char-v1"
    assert enc_meta["ganserve.max_tokens"] == "64" and enc_meta["ganserve.embedding_dim"] == "16"
    assert gen_meta["ganserve.kind"] == "text-conditional-generator"
    for key in ("latent_dim", "value_range", "channels", "image_size", "embedding_dim", "training_steps",
                "training_commit", "config", "training_data"):
        assert f"ganserve.{key}" in gen_meta
    # the ensemble: tokens + z -> image only, steps encoder -> generator, an (almost) empty 1/
    ens = read_config(tmp / "repo" / "t2i" / "config.pbtxt")
    assert ens.platform == "ensemble" and ens.max_batch_size == 8
    assert [(i.name, list(i.dims)) for i in ens.input] == [("tokens", [64]), ("z", [8])]
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
    z = np.random.default_rng(0).standard_normal((4, 8), dtype=np.float32)
    (emb,) = enc.run(["embedding"], {"tokens": tokens})
    (img,) = gen.run(["image"], {"z": z, "embedding": emb})
    with torch.no_grad():
        expected = load_generator(ckpt).model(torch.from_numpy(z), torch.from_numpy(tokens)).numpy()
    assert np.isfinite(emb).all() and np.abs(img - expected).max() < 1e-4


# ---------------------------------------------------------------- the shipped model
SHIPPED = Path(__file__).resolve().parents[2] / "model_repository"


@pytest.mark.skipif(not (SHIPPED / "text2img_generator" / "1" / "model.onnx").is_file(), reason="text2img not shipped")
def test_shipped_text2img_follows_held_out_prompts():
    """The committed ONNX pair draws the digit and colour a held-out phrasing asks for (seen
    combinations, 3 images each; the card reports the full evaluation)."""
    import onnxruntime as ort

    from training.attributes import classify, load_attribute_classifier
    from training.data.captions import seen_combos
    from training.data.images import to_uint8

    enc = ort.InferenceSession(str(SHIPPED / "text2img_encoder" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    gen = ort.InferenceSession(str(SHIPPED / "text2img_generator" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    combos = seen_combos()
    prompts = [p for d, c in combos for p in heldout_prompts(d, c, 3, seed=5)]
    (emb,) = enc.run(["embedding"], {"tokens": text.encode_batch(prompts)})
    z = np.random.default_rng(0).standard_normal((len(prompts), 100), dtype=np.float32)
    (images,) = gen.run(["image"], {"z": z, "embedding": emb})
    _, digit, colour = classify(load_attribute_classifier(), to_uint8(torch.from_numpy(images)))
    want_d = torch.tensor([d for d, _ in combos for _ in range(3)])
    want_c = torch.tensor([c for _, c in combos for _ in range(3)])
    assert (digit == want_d).float().mean() >= 0.85 and (colour == want_c).float().mean() >= 0.9
