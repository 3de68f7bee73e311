"""Captioned image sets for text-to-image training: captioned colour MNIST (offline) and the public
captioned-image folder layout of CUB-200-2011 / Oxford-102 (Reed et al. 2016).

Captioned colour MNIST: every MNIST digit is drawn in one of :data:`COLOURS` (RGB, black background,
a little brightness and tint jitter per image) and gets several captions from templates with
synonyms and varied word order ("a red seven", "the number 7 written in crimson", ...).

- **Held-out combinations** (:data:`HELDOUT_COMBOS`): one colour per digit never appears in the
  training images or captions; the generator is asked for them at evaluation time only
  (compositional generalisation).
- **Held-out prompts** (:data:`HELDOUT_TEMPLATES`): phrasings never used in training, for every
  combination, seen or not.

Everything is a pure function of the MNIST files and a seed. Captions are stored once per distinct
string (``captions`` / ``tokens``) with per-image indices (``caption_ids``): the template grammar is
small, so a few thousand strings cover 60 000 images and their embeddings are computed once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ganserve import text
from ganserve.errors import UsageError
from ganserve.training.data.images import (
    IMAGE_SUFFIXES,
    load_image,
    load_mnist,
    load_sklearn_digits,
    resize_uint8,
)

# name -> (RGB at full brightness, synonyms used in captions; the name itself comes first)
COLOURS: dict[str, tuple[tuple[int, int, int], tuple[str, ...]]] = {
    "red": ((235, 30, 30), ("red", "crimson", "scarlet")),
    "orange": ((255, 140, 0), ("orange", "tangerine", "amber")),
    "yellow": ((245, 230, 40), ("yellow", "golden", "lemon")),
    "green": ((40, 200, 60), ("green", "emerald", "grass green")),
    "cyan": ((0, 215, 225), ("cyan", "turquoise", "aqua")),
    "blue": ((45, 85, 255), ("blue", "azure", "cobalt")),
    "purple": ((150, 50, 230), ("purple", "violet", "lilac")),
    "pink": ((255, 100, 185), ("pink", "magenta", "rose")),
    "white": ((240, 240, 240), ("white", "ivory", "snow white")),
}
COLOUR_NAMES = tuple(COLOURS)
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
N_DIGITS, N_COLOURS = 10, len(COLOURS)

# one colour per digit is never trained on; every colour is held out for at least one digit
HELDOUT_COMBOS: frozenset[tuple[int, int]] = frozenset((d, (2 * d + 1) % N_COLOURS) for d in range(N_DIGITS))

# A training caption is [prefix] + core + [suffix]; {d}: the digit as a word or a numeral; {c}: a colour
# synonym. Prefixes and suffixes vary the position of the two key words, so the char encoder learns to
# find them anywhere rather than at the offsets of a few fixed sentences.
TRAIN_TEMPLATES = (
    "a {c} {d}",
    "the number {d} written in {c}",
    "handwritten {d} in {c} ink",
    "a {d} drawn in {c}",
    "{c} digit {d}",
    "the digit {d}, coloured {c}",
    "a {c} handwritten {d}",
    "{d} in {c} on a dark background",
    "a {c} number {d} on black",
    "digit {d} painted {c}",
    "the {c} digit {d}",
    "{d} coloured {c}",
    "number {d} in {c}",
    "write {d} in {c}",
    "a {c}-coloured {d}",
    "{c} {d}",
)
TRAIN_PREFIXES = ("", "", "", "", "a picture of ", "a photo of ", "this is ", "here is ", "there is ",
                  "draw ", "show me ", "a drawing of ", "please draw ", "i want ")
TRAIN_SUFFIXES = ("", "", "", "", " on a dark background", " on black", " please", " in the centre",
                  ", handwritten", " with a thin stroke", " with a thick stroke", " on a black background")
# words inserted at random positions of training captions (``filler_words`` > 0), so the encoder learns to
# look for the colour and digit words among words it does not know; none is a colour or digit word,
# and none appears in a held-out template
FILLERS = ("nice", "small", "big", "simple", "neat", "messy", "bold", "tiny", "large", "clean", "lovely", "quick",
           "careful", "sketch", "style", "font", "symbol", "character", "glyph", "figure", "printed", "scribbled",
           "centred", "old", "new", "single", "sample", "example", "just", "very", "really", "of", "the", "a",
           "and", "on", "at", "for", "by", "my", "your", "some", "this", "that", "it", "is", "as", "looks", "like",
           "exactly", "please", "here", "drawn", "thick", "thin", "fat", "slanted", "upright", "nicely")
# never used in training (neither as a core nor with any prefix/suffix)
HELDOUT_TEMPLATES = (
    "an image of a {c} {d}",
    "{d}, written with a {c} pen",
    "the handwritten number {d} shown in {c}",
    "{c} ink: the digit {d}",
)


def vocabulary() -> dict[str, dict[str, list[str]]]:
    """The words the captions of the colour sets use, per attribute and value: every digit as its word
    and its numeral, every colour with its synonyms. Exported with the text encoder
    (``ganserve.vocabulary``), so the gateway can say when a prompt names none of them."""
    return {"digit": {str(d): [word, str(d)] for d, word in enumerate(DIGIT_WORDS)},
            "colour": {name: list(synonyms) for name, (_, synonyms) in COLOURS.items()}}


def combo_class(digit: int | np.ndarray, colour: int | np.ndarray):
    """(digit, colour) -> class id ``digit * N_COLOURS + colour``."""
    return digit * N_COLOURS + colour


def seen_combos() -> list[tuple[int, int]]:
    return [(d, c) for d in range(N_DIGITS) for c in range(N_COLOURS) if (d, c) not in HELDOUT_COMBOS]


def caption(digit: int, colour: int, rng: np.random.Generator, *, templates=TRAIN_TEMPLATES,
            filler_words: float = 0.0, punctuation: float = 0.0) -> str:
    """One caption for (digit, colour) drawn from ``templates`` with random synonyms (training
    templates also get a random prefix and suffix; with probability ``filler_words`` one to three
    :data:`FILLERS` at random word positions; and each word, with probability ``punctuation``, one of
    ``, : . ; !`` after it)."""
    template = templates[int(rng.integers(len(templates)))]
    if templates is TRAIN_TEMPLATES:
        template = (TRAIN_PREFIXES[int(rng.integers(len(TRAIN_PREFIXES)))] + template +
                    TRAIN_SUFFIXES[int(rng.integers(len(TRAIN_SUFFIXES)))])
    synonyms = COLOURS[COLOUR_NAMES[colour]][1]
    d = DIGIT_WORDS[digit] if rng.random() < 0.6 else str(digit)
    out = template.format(c=synonyms[int(rng.integers(len(synonyms)))], d=d)
    if filler_words > 0 and rng.random() < filler_words:
        words = out.split(" ")
        for _ in range(int(rng.integers(1, 4))):
            words.insert(int(rng.integers(0, len(words) + 1)), FILLERS[int(rng.integers(len(FILLERS)))])
        out = " ".join(words)
    if punctuation > 0:
        words = out.split(" ")
        marks = rng.random(len(words)) < punctuation
        out = " ".join(w + ",:.;!"[int(rng.integers(5))] if m else w for w, m in zip(words, marks))
    return out


def heldout_prompts(digit: int, colour: int, n: int, *, seed: int = 0) -> list[str]:
    """``n`` prompts for (digit, colour) in phrasings never used in training."""
    rng = np.random.default_rng((seed, digit, colour, 7))
    return [caption(digit, colour, rng, templates=HELDOUT_TEMPLATES) for _ in range(n)]


@dataclass(frozen=True)
class CaptionedSet:
    """RGB images with several captions each, as in-memory tensors.

    ``caption_ids[i]`` holds the indices into ``captions`` / ``tokens`` of image ``i``'s captions
    (images with fewer captions repeat theirs). ``classes`` groups images that any of their captions
    would describe equally (colour MNIST: the (digit, colour) combination; CUB/Oxford: the class
    folder): mismatched texts come from another class, and the joint embedding is class-structured.
    """

    images: torch.Tensor          # uint8 [N, 3, S, S]
    caption_ids: torch.Tensor     # int64 [N, K]
    captions: tuple[str, ...]     # U distinct captions
    tokens: torch.Tensor          # int64 [U, L], char-v1 ids
    classes: torch.Tensor         # int64 [N]
    description: str
    attributes: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. digit, colour: int64 [N]

    def __len__(self) -> int:
        return self.images.shape[0]


def _index_captions(per_image: list[list[str]], *, length: int) -> tuple[torch.Tensor, tuple[str, ...], torch.Tensor]:
    table: dict[str, int] = {}
    k = max(len(c) for c in per_image)
    ids = np.zeros((len(per_image), k), dtype=np.int64)
    for i, caps in enumerate(per_image):
        for j in range(k):
            ids[i, j] = table.setdefault(caps[j % len(caps)], len(table))
    captions = tuple(table)
    return torch.from_numpy(ids), captions, torch.from_numpy(text.encode_batch(captions, length=length))


def colourise(grey: np.ndarray, colours: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 [N, 1, H, W] intensities + colour indices [N] -> uint8 [N, 3, H, W] on black.

    Each image's colour is its named RGB scaled by a brightness in [0.85, 1] and tinted by up to
    +-12 per channel, so colour names cover a small region rather than a single value.
    """
    base = np.array([COLOURS[n][0] for n in COLOUR_NAMES], dtype=np.float32)[colours]  # [N, 3]
    rgb = base * rng.uniform(0.85, 1.0, size=(len(grey), 1)) + rng.uniform(-12, 12, size=(len(grey), 3))
    rgb = np.clip(rgb, 0, 255).astype(np.float32)
    out = grey.astype(np.float32) / 255.0 * rgb[:, :, None, None]
    return np.round(out).astype(np.uint8)


def make_colour_set(grey: torch.Tensor, digits: torch.Tensor, *, seed: int = 0, captions_per_image: int = 5,
                    heldout: bool = True, length: int = text.DEFAULT_LENGTH, description: str = "",
                    templates=TRAIN_TEMPLATES, filler_words: float = 0.0, punctuation: float = 0.0) -> CaptionedSet:
    """Colour and caption grey digits. ``heldout=True`` (training) never draws a held-out combination;
    ``heldout=False`` draws any colour (the attribute classifier's training data)."""
    rng = np.random.default_rng((seed, 2016))
    d = digits.numpy().astype(np.int64)
    allowed = [[c for c in range(N_COLOURS) if not (heldout and (digit, c) in HELDOUT_COMBOS)]
               for digit in range(N_DIGITS)]
    pick = rng.integers(0, 1 << 30, size=len(d))
    colours = np.array([allowed[digit][p % len(allowed[digit])] for digit, p in zip(d, pick)], dtype=np.int64)
    images = colourise(grey.numpy(), colours, rng)
    per_image = [[caption(int(di), int(ci), rng, templates=templates, filler_words=filler_words,
                          punctuation=punctuation) for _ in range(captions_per_image)]
                 for di, ci in zip(d, colours)]
    caption_ids, captions, tokens = _index_captions(per_image, length=length)
    return CaptionedSet(
        images=torch.from_numpy(images), caption_ids=caption_ids, captions=captions, tokens=tokens,
        classes=torch.from_numpy(combo_class(d, colours)), description=description,
        attributes={"digit": torch.from_numpy(d), "colour": torch.from_numpy(colours)})


def load_colour_mnist(path: str | Path | None, *, split: str = "train", seed: int = 0, captions_per_image: int = 5,
                      heldout: bool = True, image_size: int = 28, limit: int | None = None,
                      source: str = "mnist", length: int = text.DEFAULT_LENGTH,
                      filler_words: float = 0.0, punctuation: float = 0.0) -> CaptionedSet:
    """Captioned colour MNIST from the MNIST IDX files at ``path`` (``source="digits"``: scikit-learn's
    8x8 digits resized, for tests). Held-out combinations are excluded when ``heldout`` is True."""
    if source == "mnist":
        if path is None:
            raise UsageError("colour-mnist needs the MNIST folder: --data DIR (the IDX files)")
        base = load_mnist(path, split=split)
    elif source == "digits":
        base = load_sklearn_digits()
    else:
        raise UsageError(f"unknown colour-mnist source {source!r}; valid: mnist, digits")
    grey, digits = base.images, base.labels
    if limit is not None:
        grey, digits = grey[:limit], digits[:limit]
    grey = resize_uint8(grey, image_size)
    combos = "held-out combinations excluded" if heldout else "all combinations"
    fillers = f", filler words in {filler_words:.0%} of captions" if filler_words else ""
    fillers += f", punctuation after {punctuation:.0%} of words" if punctuation else ""
    desc = (f"captioned colour MNIST from {base.description}: {len(grey)} images, {N_COLOURS} colours, "
            f"{captions_per_image} captions each{fillers}, {combos}, seed {seed}")
    return make_colour_set(grey, digits, seed=seed + (0 if split == "train" else 1000),
                           captions_per_image=captions_per_image, heldout=heldout, length=length,
                           description=desc, filler_words=filler_words, punctuation=punctuation)


def render_combos(grey: torch.Tensor, digits: torch.Tensor, combos: list[tuple[int, int]], n_per_combo: int,
                  *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real images for given combinations (evaluation references): ``n_per_combo`` digits of each
    combination's digit, coloured. Returns (uint8 [M, 3, H, W], digit [M], colour [M])."""
    rng = np.random.default_rng((seed, 99))
    d_np = digits.numpy()
    picks, ds, cs = [], [], []
    for digit, colour in combos:
        idx = np.flatnonzero(d_np == digit)
        picks.append(rng.choice(idx, n_per_combo, replace=len(idx) < n_per_combo))
        ds += [digit] * n_per_combo
        cs += [colour] * n_per_combo
    sel = np.concatenate(picks)
    colours = np.array(cs, dtype=np.int64)
    images = colourise(grey[sel].numpy(), colours, rng)
    return torch.from_numpy(images), torch.tensor(ds), torch.from_numpy(colours)


# ---------------------------------------------------------------- CUB-200-2011 / Oxford-102 layout
def load_captioned_folder(path: str | Path, *, image_size: int, length: int = text.DEFAULT_LENGTH,
                          limit: int | None = None) -> CaptionedSet:
    """The public captioned-image layout (Reed et al. 2016's CUB-200-2011 and Oxford-102 release):

    ``<path>/images/<class>/<name>.jpg`` and ``<path>/text/<class>/<name>.txt`` (or ``text_c10/``),
    one caption per line. Images without a caption file, and blank lines, are skipped; the class is the
    image's folder. Images are centre-cropped to a square and resized to ``image_size``.
    """
    root = Path(path)
    images_dir = root / "images"
    text_dir = next((root / t for t in ("text", "text_c10") if (root / t).is_dir()), None)
    if not images_dir.is_dir() or text_dir is None:
        raise UsageError(f"{root} is not a captioned-image folder: expected images/<class>/<name>.jpg and "
                         "text/<class>/<name>.txt (or text_c10/)")
    files = sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    arrays, per_image, class_names = [], [], []
    for f in files:
        rel = f.relative_to(images_dir).with_suffix(".txt")
        txt = text_dir / rel
        if not txt.is_file():
            continue
        lines = [line.strip() for line in txt.read_text(encoding="utf-8", errors="replace").splitlines()]
        lines = [line for line in lines if line]
        if not lines:
            continue
        try:
            arrays.append(load_image(f, size=image_size, channels=3))
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot decode image {f}: {exc}") from None
        per_image.append(lines)
        class_names.append(rel.parent.as_posix())
        if limit is not None and len(arrays) >= limit:
            break
    if not arrays:
        raise UsageError(f"no image under {images_dir} has a non-empty caption file under {text_dir}")
    names = sorted(set(class_names))
    caption_ids, captions, tokens = _index_captions(per_image, length=length)
    return CaptionedSet(
        images=torch.from_numpy(np.stack(arrays)), caption_ids=caption_ids, captions=captions, tokens=tokens,
        classes=torch.tensor([names.index(c) for c in class_names]),
        description=f"captioned folder {root} ({len(arrays)} images, {len(names)} classes, {len(captions)} captions)")
