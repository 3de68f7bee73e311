"""ganserve.training.families.gan_int_cls: GAN-INT-CLS's matching-aware loss and GAN-INT term, the need for a
pre-trained text encoder, and training through the one loop."""

import json

import pytest
import torch

from ganserve.errors import UsageError
from ganserve.training.checkpoint import model_kind
from ganserve.training.families import apply_overrides, validate
from ganserve.training.families.gan_int_cls import mismatched_indices
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
