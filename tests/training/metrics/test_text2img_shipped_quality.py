"""The shipped text2img (model_repository/text2img_{encoder,generator}, run through ONNX Runtime) passes the
two checks that the previous one failed and that test_text_conditional.py shows catch a collapsed
generator and a mix that goes blank: every seed of a prompt its own image (per-prompt diversity >= 50%
of real colour-MNIST digits of the same combination, no near-identical prompt), and every step of the
prompt-mix curve a confident, drawn digit. A smaller sample than the card's (`ganserve evaluate`), so the
margins are looser; the card's figures are the reference."""

from pathlib import Path

import pytest
import torch

from ganserve.training.data.captions import HELDOUT_COMBOS, render_combos, seen_combos
from ganserve.training.data.images import load_mnist
from ganserve.training.metrics import text_conditional as tc

ROOT = Path(__file__).resolve().parents[3]
GENERATOR = ROOT / "model_repository" / "text2img_generator" / "1" / "model.onnx"
MNIST = ROOT.parent / "shared" / "data" / "mnist"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not GENERATOR.is_file(), reason="text2img is not shipped"),
              pytest.mark.skipif(not MNIST.is_dir(), reason=f"real digits for the reference: {MNIST} missing")]


@pytest.fixture(scope="module")
def shipped():
    torch.manual_seed(0)
    return tc.load_text_to_image(GENERATOR), tc.attribute_readout(), load_mnist(MNIST, split="test")


@pytest.mark.parametrize("group", ["seen", "heldout"])
def test_every_seed_of_a_prompt_gives_its_own_image(shipped, group):
    model, read, test = shipped
    combos = seen_combos()[::8] if group == "seen" else sorted(HELDOUT_COMBOS)
    real, digits, colours = render_combos(test.images, test.labels, combos, 20, seed=0)
    div = tc.prompt_diversity(model, read, combos, real, digits, colours, seeds=8)
    assert tc.diversity_met(div), div
    assert div["collapsed_prompts"] == 0, div


def test_every_step_of_a_prompt_mix_is_a_drawn_digit(shipped):
    model, read, test = shipped
    real, _, _ = render_combos(test.images, test.labels, seen_combos(), 5, seed=0)
    curve = tc.mix_curve(model, read, real=real, seeds=8, seed=1)
    assert tc.mix_met(curve), {k: v for k, v in curve.items() if k != "pairs"}
