"""Tokenisation of prompts for the text-conditional models: the ``char-v1`` tokenizer.

Shared by training (the text encoder learns on these ids) and serving (the gateway turns a prompt
into ``tokens`` before calling Triton or ONNX Runtime), so it lives here, with numpy only.

``char-v1``, step by step (docs/model-contract.md, "Text-conditional models"):

1. Unicode NFKD, then every combining mark dropped (``"crème"`` -> ``"creme"``).
2. Lower case; every run of whitespace becomes one space; leading and trailing spaces removed.
3. Each character becomes an id: ``0`` is padding, ``1`` an unknown character (anything outside
   :data:`ALPHABET`), ``2 + ALPHABET.index(c)`` otherwise.
4. The ids are cut to ``length`` characters (the encoder's fixed ``max_tokens``) and padded with 0.

A character model has no unknown *words*: a misspelt or new word still maps to known characters.
An empty prompt gives all padding; the gateway refuses it before it gets here.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np

NAME = "char-v1"
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 .,;:!?'\"-()/&+"
PAD, UNKNOWN = 0, 1
VOCAB_SIZE = 2 + len(ALPHABET)
DEFAULT_LENGTH = 64
_IDS = {c: i + 2 for i, c in enumerate(ALPHABET)}


def normalize(text: str) -> str:
    """Steps 1 and 2: accents dropped, lower case, single spaces, stripped."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.lower().split())


def encode(text: str, *, length: int = DEFAULT_LENGTH) -> np.ndarray:
    """One prompt -> ``int64 [length]`` ids (cut or padded)."""
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    ids = np.zeros(length, dtype=np.int64)
    chars = normalize(text)[:length]
    ids[:len(chars)] = [_IDS.get(c, UNKNOWN) for c in chars]
    return ids


def encode_batch(texts: Sequence[str], *, length: int = DEFAULT_LENGTH) -> np.ndarray:
    """Prompts -> ``int64 [n, length]``."""
    out = np.zeros((len(texts), length), dtype=np.int64)
    for i, text in enumerate(texts):
        out[i] = encode(text, length=length)
    return out


def decode(ids: Sequence[int] | np.ndarray) -> str:
    """Ids -> the normalised text they came from (padding dropped, unknown shown as ``?``...
    use only for logs and tests: ``?`` is also a real character)."""
    return "".join(ALPHABET[i - 2] if i >= 2 else "?" for i in np.asarray(ids).tolist() if i != PAD)


def is_blank(text: str) -> bool:
    """True when nothing is left after normalisation (an empty or whitespace-only prompt)."""
    return not normalize(text)


__all__ = ["ALPHABET", "DEFAULT_LENGTH", "NAME", "PAD", "UNKNOWN", "VOCAB_SIZE", "decode", "encode",
           "encode_batch", "is_blank", "normalize"]
