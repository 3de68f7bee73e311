"""training.families.gan_int_cls: GAN-INT-CLS's matching-aware loss and GAN-INT term, the need for a
pre-trained text encoder, and training through the one loop."""

import json

import pytest
import torch

from ganserve.errors import UsageError
from ganserve.training.checkpoint import model_kind
from ganserve.training.families import apply_overrides, validate
from ganserve.training.families.gan_int_cls import mismatched_indices, save_encoder
from ganserve.training.loop import Trainer
from ganserve.training.presets import preset


def test_mismatched_indices_pair_every_row_with_another_class():
    gen = torch.Generator().manual_seed(0)
    classes = torch.tensor([0, 0, 1, 2, 2, 2, 3, 1])
    for _ in range(20):
        j = mismatched_indices(classes, gen=gen)
        assert (j != torch.arange(8)).all() and (classes[j] != classes).all()
    same = mismatched_indices(torch.zeros(4, dtype=torch.long), gen=gen)  # no other class: still j != i
    assert (same != torch.arange(4)).all()


def test_discriminator_sees_the_mismatched_pairs(t2i_run):
    _, trainer = t2i_run
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


def test_generator_loss_includes_interpolated_texts(t2i_run):
    _, trainer = t2i_run
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


def test_training_runs_through_the_loop_and_resumes(t2i_run):
    tmp, trainer = t2i_run
    rows = [json.loads(line) for line in (tmp / "run" / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 4 and "loss_int" in rows[-1]
    assert (tmp / "run" / "samples.png").is_file()
    # the checkpoint carries the frozen encoder: a resumed trainer gets exactly the same one
    again = Trainer(trainer.cfg, out_dir=tmp / "run")
    again.load_checkpoint(tmp / "run" / "checkpoint.pt")
    for a, b in zip(again.G.encoder.state_dict().values(), trainer.G.encoder.state_dict().values()):
        assert torch.equal(a, b)
    assert model_kind(tmp / "run" / "checkpoint.pt") == "text-conditional"


def test_remedy_options_are_checked_and_off_by_default():
    cfg = preset("text2img-tiny")
    assert (cfg.model.d_minibatch_std, cfg.train.ms_weight, cfg.train.text_noise, cfg.train.feature_match_weight,
            cfg.train.int_beta_random) == (0, 0.0, 0.0, 0.0, False)
    for bad in ("train.ms_weight=-1", "train.text_noise=-0.1", "train.feature_match_weight=-2", "model.d_minibatch_std=-4"):
        with pytest.raises(UsageError, match=bad.partition("=")[0]):
            validate(apply_overrides(cfg, [bad]))


def test_minibatch_stddev_sees_a_batch_of_copies():
    from ganserve.training.models.gan_int_cls import minibatch_stddev

    same = torch.randn(1, 8, 3, 3).expand(8, -1, -1, -1)
    varied = torch.randn(8, 8, 3, 3)
    assert minibatch_stddev(same, 4).shape == (8, 1, 3, 3)
    assert minibatch_stddev(same, 4).max() < 1e-3 < minibatch_stddev(varied, 4).min()
    assert minibatch_stddev(varied, 3).shape == (8, 1, 3, 3)  # 8 is no multiple of 3: one group


def _remedy_trainer(t2i_run, tmp_path, *overrides):
    _, trainer = t2i_run
    cfg = apply_overrides(trainer.cfg, list(overrides))
    return Trainer(cfg, out_dir=tmp_path, data=trainer.data)


@pytest.mark.parametrize("shared", [False, True])
def test_each_remedy_enters_the_step(t2i_run, tmp_path, shared):
    trainer = _remedy_trainer(t2i_run, tmp_path, "model.d_minibatch_std=4", "train.ms_weight=1",
                              "train.text_noise=0.5", "train.feature_match_weight=1", "train.int_beta_random=true",
                              f"train.int_shared_batch={shared}")
    fam, seen = trainer.family, []

    def spy(x, e, *features):
        seen.append(e.detach().clone())
        return trainer.D(x, e, *features)

    batch = fam.batch(trainer.data, torch.arange(16), torch.device("cpu"))
    out = fam.d_step(G=trainer.G, critic=spy, batch=batch, gen=torch.Generator().manual_seed(1), keep_graph=True)
    right, cond = out.carry["right"], out.carry["cond"]
    # shared: G drew the interpolated-text images with the fakes, in one batch
    assert ("int" in out.carry) == shared
    # G's condition is the embedding plus noise of about text_noise x its batch std; D judges the clean one
    assert all(torch.equal(e, right) or torch.equal(e, right[out.carry["wrong_idx"]]) for e in seen)
    ratio = ((cond - right).std(0) / right.std(0)).mean()
    assert 0.3 < ratio < 0.7
    assert out.carry["real_features"].shape == trainer.D(batch["images"], right, True)[1].shape[1:]
    seen.clear()
    loss, stats = fam.g_loss(G=trainer.G, critic=spy, batch=batch, adv=trainer.adv,
                             gen=torch.Generator().manual_seed(2), carry=out.carry)
    assert {"loss_ms", "loss_fm", "loss_int"} <= set(stats) and torch.isfinite(loss)
    # the interpolated texts are spread over the mix, not all at its midpoint
    mixed, wrong = seen[-1], right[out.carry["wrong_idx"]]
    beta = ((mixed - wrong) * (right - wrong)).sum(1) / (right - wrong).pow(2).sum(1)
    assert beta.min() < 0.3 and beta.max() > 0.7
    loss.backward()
    assert all(p.grad is not None for p in trainer.G.generator.parameters())


def test_mode_seeking_makes_one_texts_images_depend_on_z(t2i_run, tmp_path):
    """The tiny run without and with the mode-seeking term: after the same steps, the images of one text
    under different z are further apart with it."""
    spread = {}
    for weight in (0, 1):
        trainer = _remedy_trainer(t2i_run, tmp_path / str(weight), f"train.ms_weight={weight}", "train.steps=30")
        trainer.fit()
        G = trainer.G.eval()
        tokens = trainer.data.tokens[:4].repeat_interleave(8, 0)
        z = torch.randn(32, trainer.cfg.model.latent_dim, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            images = G(z, tokens).reshape(4, 8, -1)
        spread[weight] = torch.stack([torch.pdist(x).mean() for x in images]).mean()
    assert spread[1] > 1.3 * spread[0], spread


def test_encoder_from_onnx_has_the_exported_weights(t2i_run, tmp_path):
    from ganserve.training.export import export_checkpoint_parts
    from ganserve.training.families.gan_int_cls import encoder_from_onnx, load_encoder_file

    tmp, trainer = t2i_run
    results = export_checkpoint_parts(tmp / "run" / "checkpoint.pt", repository=tmp_path, name="t2i",
                                      max_batch_size=8)
    result = encoder_from_onnx(results["t2i_encoder"].onnx_path, trainer.family.encoder_config())
    own = trainer.G.encoder.state_dict()
    assert set(result.encoder.state_dict()) == set(own)
    assert all(torch.equal(v, own[k]) for k, v in result.encoder.state_dict().items())
    assert result.steps == 4 and "colour" in result.description
    # saved, it is a text encoder file like a trained one (train.text_encoder accepts it)
    save_encoder(result, tmp_path / "enc.pt", meta={"from_onnx": "x.onnx"})
    assert load_encoder_file(tmp_path / "enc.pt", trainer.family.encoder_config())["meta"]["from_onnx"] == "x.onnx"
    with pytest.raises(UsageError, match="not an exported text encoder"):
        encoder_from_onnx(results["t2i_generator"].onnx_path, trainer.family.encoder_config())
