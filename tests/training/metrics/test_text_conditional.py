"""training.metrics.text_conditional: per-prompt diversity and the prompt-mix curve catch a generator that
ignores z and a mix that goes blank, and pass a healthy one.

Everything is trained here, in seconds, on colour digits (scikit-learn's 8x8 digits, coloured): a small
classifier as the measuring instrument, and small conditional generators over a one-hot "text encoder"
that reads the digit and colour words of a prompt. The healthy generator is trained by conditional IMLE
(each real image pulls the nearest of several samples of its condition), which uses z; the collapsed
one by regression onto real images (its optimum, the class mean, ignores z).
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganserve import text
from ganserve.errors import UsageError
from ganserve.training.data.captions import (
    COLOUR_NAMES,
    COLOURS,
    DIGIT_WORDS,
    N_COLOURS,
    N_DIGITS,
    load_colour_mnist,
    seen_combos,
)
from ganserve.training.data.images import to_uint8, to_unit_range
from ganserve.training.metrics import text_conditional as tc

LATENT = 8
COMBOS = seen_combos()[::8]  # 10 combinations, every digit


@pytest.fixture(scope="module")
def digits():
    torch.manual_seed(0)
    data = load_colour_mnist(None, source="digits", image_size=8, captions_per_image=1, heldout=False)
    return data.images, data.attributes["digit"], data.attributes["colour"]


class TinyReadout(nn.Module):
    """Pixels -> 64 features -> digit and colour logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 64), nn.ReLU())
        self.digit, self.colour = nn.Linear(64, N_DIGITS), nn.Linear(64, N_COLOURS)

    def forward(self, x):
        f = self.features(x)
        return f, self.digit(f), self.colour(f)


@pytest.fixture(scope="module")
def read(digits):
    images, d, c = digits
    x = to_unit_range(images)
    net = TinyReadout()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(300):
        idx = torch.randint(0, len(x), (128,), generator=g)
        _, ld, lc = net(x[idx])
        loss = F.cross_entropy(ld, d[idx]) + F.cross_entropy(lc, c[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()

    @torch.no_grad()
    def readout(batch: torch.Tensor):
        f, ld, lc = net(to_unit_range(batch))
        return f.double().numpy(), ld.softmax(1), lc.softmax(1)

    return readout


def one_hot_embed(tokens: torch.Tensor) -> torch.Tensor:
    """A "text encoder" that reads the digit (word or numeral) and the colour (any synonym) of a prompt."""
    out = torch.zeros(len(tokens), N_DIGITS + N_COLOURS)
    for i, ids in enumerate(tokens.numpy()):
        prompt = text.decode(ids)
        words = re.findall(r"[a-z]+|\d", prompt)
        d = next(k for k, w in enumerate(DIGIT_WORDS) if w in words or str(k) in words)
        c = next(k for k, n in enumerate(COLOUR_NAMES) if any(s in prompt for s in COLOURS[n][1]))
        out[i, d] = out[i, N_DIGITS + c] = 1
    return out


def conditions(d: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return torch.cat([F.one_hot(d, N_DIGITS), F.one_hot(c, N_COLOURS)], 1).float()


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(LATENT + N_DIGITS + N_COLOURS, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                         nn.Linear(128, 3 * 8 * 8), nn.Tanh())


def as_model(net: nn.Module, *, ignore_z: bool = False, fade_between: bool = False) -> tc.TextToImage:
    """``ignore_z``: z replaced by zeros. ``fade_between``: the image fades to black as the embedding
    leaves the prompts' (a digit's weight under 0.7 in it: black from a 40/60 mix on), as a generator
    does whose D never saw interpolated texts."""

    @torch.no_grad()
    def generate(z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        x = net(torch.cat([torch.zeros_like(z) if ignore_z else z, e], 1)).reshape(-1, 3, 8, 8)
        if fade_between:
            keep = ((e[:, :N_DIGITS].amax(1) - 0.65) / 0.15).clamp(0, 1)[:, None, None, None]
            x = -1 + (x + 1) * keep
        return to_uint8(x)

    return tc.TextToImage(one_hot_embed, generate, LATENT, text.DEFAULT_LENGTH)


def fit(digits, *, imle: bool, steps: int = 600, samples: int = 16) -> nn.Module:
    images, d, c = digits
    x, cond = to_unit_range(images).flatten(1), conditions(d, c)
    torch.manual_seed(2)
    net = mlp()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(3)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=g)
        z = torch.randn(64, samples, LATENT, generator=g)
        if imle:  # the nearest of `samples` draws of each real image's condition is pulled towards it
            with torch.no_grad():
                out = net(torch.cat([z, cond[idx, None].expand(-1, samples, -1)], 2))
                best = (out - x[idx, None]).pow(2).sum(2).argmin(1)
            z = z[torch.arange(64), best]
        else:  # regression onto the real images: the optimum is the class mean, whatever z
            z = z[:, 0]
        loss = (net(torch.cat([z, cond[idx]], 1)) - x[idx]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def healthy(digits) -> nn.Module:
    return fit(digits, imle=True)


@pytest.fixture(scope="module")
def regressed(digits) -> nn.Module:
    return fit(digits, imle=False)


def diversity(model, read, digits):
    return tc.prompt_diversity(model, read, COMBOS, *digits, seeds=8)


def mix(model, read, digits):
    return tc.mix_curve(model, read, real=digits[0], seeds=8)


def test_a_healthy_generator_meets_both_targets(healthy, read, digits):
    div, curve = diversity(as_model(healthy), read, digits), mix(as_model(healthy), read, digits)
    assert tc.diversity_met(div), div
    assert div["collapsed_prompts"] == 0
    assert tc.mix_met(curve), {k: v for k, v in curve.items() if k != "pairs"}
    # the ends of each curve are its two prompts
    for pair in curve["pairs"]:
        assert pair["steps"][0]["digit_a"] >= 0.75 and pair["steps"][-1]["digit_b"] >= 0.75


@pytest.mark.parametrize("collapsed", ["z ignored", "trained by regression"])
def test_a_generator_that_ignores_z_fails_the_diversity_target(collapsed, healthy, regressed, read, digits):
    model = as_model(healthy, ignore_z=True) if collapsed == "z ignored" else as_model(regressed)
    div = diversity(model, read, digits)
    assert not tc.diversity_met(div)
    assert div["pixel_ratio"] < 0.25 and div["feature_ratio"] < 0.25, div
    if collapsed == "z ignored":  # exactly one image per prompt
        assert div["pixel"] == 0 and div["collapsed_prompts"] == 1


def test_a_mix_that_goes_blank_fails_the_mix_target(healthy, read, digits):
    curve = mix(as_model(healthy, fade_between=True), read, digits)
    assert not tc.mix_met(curve)
    middle = [s for pair in curve["pairs"] for s in pair["steps"] if 0.4 <= s["mix"] <= 0.6]
    assert all(s["blank"] == 1 for s in middle)
    # still a healthy generator at the ends, and diverse: only the mix target catches it
    assert all(pair["steps"][0]["blank"] == 0 and pair["steps"][-1]["blank"] == 0 for pair in curve["pairs"])
    assert tc.diversity_met(diversity(as_model(healthy, fade_between=True), read, digits))


def test_distances():
    a = torch.zeros(2, 3, 2, 2, dtype=torch.uint8)
    a[1] = 255
    assert tc.pixel_distance(a) == pytest.approx(1.0)
    assert tc.pixel_distance(a[[0, 0, 0]]) == 0
    assert tc.feature_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]]).numpy()) == pytest.approx(5.0)
    assert tc.foreground(a).tolist() == [0.0, 1.0]
    assert tc.ink_area(a).tolist() == [0.0, 1.0]
    # a stroke in the grey of a cyan-red mix: half the intensity of a pure colour, all of its ink
    grey, red = torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    grey[:, :, 1] = torch.tensor([118, 122, 127], dtype=torch.uint8)[:, None]
    red[:, 0, 1] = 235
    assert tc.foreground(grey).mean() < 0.6 * tc.foreground(red).mean()
    assert torch.equal(tc.ink_area(grey), tc.ink_area(red))


def test_a_model_of_another_size_is_refused_in_one_line():
    square = tc.TextToImage(one_hot_embed, lambda z, e: torch.zeros(len(z), 3, 16, 16, dtype=torch.uint8), LATENT,
                            text.DEFAULT_LENGTH)
    with pytest.raises(UsageError, match=r"3x28x28 colour-MNIST or 3x8x8 colour-digits images; the model makes \(3, 16, 16\)"):
        tc.measurable(square, None)
    big = tc.TextToImage(one_hot_embed, lambda z, e: torch.zeros(len(z), 3, 28, 28, dtype=torch.uint8), LATENT,
                         text.DEFAULT_LENGTH)
    with pytest.raises(UsageError, match="pass --data DIR"):
        tc.measurable(big, None)
