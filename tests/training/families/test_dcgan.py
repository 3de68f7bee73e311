"""ganserve.training.families.dcgan: continuing from a shipped DCGAN's ONNX model."""

import numpy as np
import onnxruntime as ort
import torch

from ganserve.training.export import export_checkpoint
from ganserve.training.loop import Trainer
from tests.training.helpers import tiny_config


def test_a_run_starts_from_an_exported_dcgan_with_z_norm_switched_on(dcgan_tiny, tmp_path):
    """train.init_from=model.onnx reads the DCGAN generator back by its weights' names (ConvTranspose and
    unfolded BatchNorm); with model.z_norm=pixel the continued generator makes the exported model's images
    for z of the length it was trained on."""
    result = export_checkpoint(dcgan_tiny / "run" / "checkpoint.pt", repository=tmp_path / "repo", name="d",
                               max_batch_size=8)
    trainer = Trainer(tiny_config("train.steps=1", "model.z_norm=pixel", f"train.init_from={result.onnx_path}"),
                      out_dir=tmp_path / "run")
    z = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    z = z * (16 ** 0.5) / z.norm(dim=1, keepdim=True)  # on the shell: pixel norm leaves it unchanged
    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    expected = session.run(["image"], {"z": z.numpy()})[0]
    G = trainer.G.eval()
    with torch.no_grad():
        assert np.abs(G(z).numpy() - expected).max() <= 1e-5
        assert np.abs(G(0.3 * z).numpy() - expected).max() <= 1e-5  # a shortened z: the same image


def test_the_exported_z_norm_dcgan_carries_its_truncation_anchors(tmp_path):
    """model.z_norm=pixel: the standing generator gets k-means medoids as truncation anchors (the same for
    one checkpoint every time), and the ONNX model computes what it computes, truncated z included (to
    float rounding, which the 3-step generator's BatchNorms amplify)."""
    from ganserve.training.metrics.unconditional import seed_latents

    trainer = Trainer(tiny_config("train.steps=3", "model.z_norm=pixel", "model.truncation_anchors=12"),
                      out_dir=tmp_path / "run")
    trainer.fit()
    ckpt = trainer.save_checkpoint()
    G = trainer.exported_generator()
    assert 1 <= len(G.anchors) <= 12 and G.anchor_images.shape == (len(G.anchors), 64)
    first = G.anchors.clone()
    torch.testing.assert_close(trainer.exported_generator().anchors, first)
    result = export_checkpoint(ckpt, repository=tmp_path / "repo", name="d", max_batch_size=8)
    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    for t in (None, 1.0, 0.5):
        z = seed_latents(range(8), latent_dim=16, truncation=t)
        with torch.no_grad():
            expected = G(torch.from_numpy(z)).numpy()
        assert np.abs(session.run(["image"], {"z": z})[0] - expected).max() <= 1e-3


def test_the_anchored_pass_runs_only_for_batches_holding_a_truncated_z(tmp_path):
    """The export puts the anchored second pass behind an ONNX If (ganserve.training.export.lazy_output): the
    main graph holds one pass of the network, the branch the other; a batch mixing truncated and untruncated
    z gives each row what a batch of its own kind gives it, and what PyTorch gives."""
    import onnx

    from ganserve.training.metrics.unconditional import seed_latents

    trainer = Trainer(tiny_config("train.steps=3", "model.z_norm=pixel", "model.truncation_anchors=12"),
                      out_dir=tmp_path / "run")
    trainer.fit()
    result = export_checkpoint(trainer.save_checkpoint(), repository=tmp_path / "repo", name="d", max_batch_size=8)
    graph = onnx.load(str(result.onnx_path)).graph
    (branch,) = [n for n in graph.node if n.op_type == "If"]
    then_graph = next(a.g for a in branch.attribute if a.name == "then_branch")
    convs = [n for n in graph.node if n.op_type == "ConvTranspose"]
    assert convs and len([n for n in then_graph.node if n.op_type == "ConvTranspose"]) == len(convs)
    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    plain, short = seed_latents(range(6), latent_dim=16), seed_latents(range(6, 12), latent_dim=16, truncation=0.5)
    mixed = session.run(["image"], {"z": np.concatenate([plain, short])})[0]
    assert np.array_equal(mixed[:6], session.run(["image"], {"z": plain})[0])
    assert np.abs(mixed[6:] - session.run(["image"], {"z": short})[0]).max() <= 1e-6
    G = trainer.exported_generator()
    with torch.no_grad():
        expected = G(torch.from_numpy(np.concatenate([plain, short]))).numpy()
    assert np.abs(mixed - expected).max() <= 1e-3
