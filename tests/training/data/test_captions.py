"""ganserve.training.data.captions: captioned colour MNIST (held-out combinations and phrasings) and the
captioned-folder layout."""

import numpy as np
import pytest
import torch

from ganserve import text
from ganserve.errors import UsageError
from ganserve.training.data.captions import (
    HELDOUT_COMBOS,
    HELDOUT_TEMPLATES,
    N_COLOURS,
    caption,
    combo_class,
    heldout_prompts,
    load_captioned_folder,
    load_colour_mnist,
)


def test_colour_mnist_is_deterministic_and_seeded():
    a = load_colour_mnist(None, source="digits", image_size=8, limit=200, seed=3)
    b = load_colour_mnist(None, source="digits", image_size=8, limit=200, seed=3)
    c = load_colour_mnist(None, source="digits", image_size=8, limit=200, seed=4)
    assert torch.equal(a.images, b.images) and a.captions == b.captions and torch.equal(a.caption_ids, b.caption_ids)
    assert not torch.equal(a.attributes["colour"], c.attributes["colour"])
    assert a.images.shape == (200, 3, 8, 8) and a.images.dtype == torch.uint8
    assert a.caption_ids.shape == (200, 5) and a.tokens.shape == (len(a.captions), text.DEFAULT_LENGTH)


def test_heldout_combinations_never_reach_training(digits_set):
    d, c = digits_set.attributes["digit"], digits_set.attributes["colour"]
    seen = {(int(x), int(y)) for x, y in zip(d, c)}
    assert not seen & HELDOUT_COMBOS
    assert {dd for dd, _ in HELDOUT_COMBOS} == set(range(10))          # one per digit ...
    assert {cc for _, cc in HELDOUT_COMBOS} == set(range(N_COLOURS))   # ... every colour held out once or more
    assert torch.equal(digits_set.classes, combo_class(d, c))
    # every caption of an image names the image's own digit and colour (checked on the class of its text)
    held_classes = {combo_class(dd, cc) for dd, cc in HELDOUT_COMBOS}
    assert not set(digits_set.classes.tolist()) & held_classes


def test_heldout_prompts_are_phrasings_never_trained_on(digits_set):
    rng = np.random.default_rng(0)
    train = {caption(d, c, rng) for d in range(10) for c in range(N_COLOURS) for _ in range(30)} | set(digits_set.captions)
    prompts = [p for d in range(10) for c in range(N_COLOURS) for p in heldout_prompts(d, c, 5)]
    assert not set(prompts) & train
    assert heldout_prompts(7, 0, 3) == heldout_prompts(7, 0, 3)  # deterministic
    # held-out templates' fixed words never appear in that order in a training caption
    assert not any("image of" in t or " pen" in t or "shown in" in t or "ink:" in t for t in train)
    assert len(HELDOUT_TEMPLATES) == 4


def test_captioned_folder_layout(tmp_path):
    from PIL import Image

    for cls, name, lines in (("001.Albatross", "a1", "a white bird\nwith long wings\n\n"),
                             ("001.Albatross", "a2", "a big seabird"),
                             ("002.Wren", "w1", "a small brown bird"),
                             ("002.Wren", "no_text", None)):
        (tmp_path / "images" / cls).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "images" / cls / f"{name}.jpg")
        if lines is not None:
            (tmp_path / "text" / cls).mkdir(parents=True, exist_ok=True)
            (tmp_path / "text" / cls / f"{name}.txt").write_text(lines)
    data = load_captioned_folder(tmp_path, image_size=16)
    assert data.images.shape == (3, 3, 16, 16)           # the image without captions is skipped
    assert data.classes.tolist() == [0, 0, 1]
    caps = [[data.captions[i] for i in row] for row in data.caption_ids.tolist()]
    assert caps[0] == ["a white bird", "with long wings"] and caps[1] == ["a big seabird"] * 2
    with pytest.raises(UsageError, match="captioned-image folder"):
        load_captioned_folder(tmp_path / "images", image_size=16)
