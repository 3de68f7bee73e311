"""The text encoder of the text-to-image models: a char-CNN-RNN (Reed et al. 2016, "Learning Deep
Representations of Fine-Grained Visual Descriptions") over ``ganserve.text`` char-v1 ids, pre-trained
with the paper's deep symmetric structured joint embedding against a small image encoder.

Architecture (``tokens`` int64 [B, L] -> ``embedding`` float [B, E]):
character embedding -> two temporal convolutions (ReLU, max-pool x2 each) -> a GRU over the L/4
pooled steps -> mean of the GRU states over the steps that hold text (padding masked out) -> linear.
Any text works: unknown characters have their own id, long prompts are cut to L by the tokenizer, and
an all-padding input gives the projection of a zero vector (finite; the mask count is clamped to 1).

Pre-training (``ganserve train-text-encoder``): image encoder phi and text encoder psi, compatibility
F(v, t) = phi(v) . psi(t) / tau over a batch; the loss is the symmetric, class-structured
cross-entropy: each image should score its own class's texts highest among the batch's texts and each
text its own class's images (the softmax form of DS-SJE's two ranking terms; every text of the same
class counts as a match). On colour MNIST, linear attribute probes (digit, colour) on psi(t) add a
small auxiliary loss, which keeps the two factors linearly separable for unseen combinations.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ganserve import text
from ganserve.errors import UsageError
from training.files import torch_load
from training.models.layers import check_shape

ENCODER_VERSION = 1


@dataclass(frozen=True)
class TextEncoderConfig:
    vocab_size: int = text.VOCAB_SIZE   # char-v1: padding, unknown and the alphabet
    max_tokens: int = text.DEFAULT_LENGTH  # L: the tokenizer's fixed length
    char_dim: int = 32                  # learned character embedding (the paper: one-hot)
    width: int = 128                    # conv channels and GRU state
    embedding_dim: int = 128            # E: the output


class TextEncoder(nn.Module):
    """Char-CNN-RNN: tokens int64 [B, L] -> embedding [B, E]."""

    def __init__(self, cfg: TextEncoderConfig) -> None:
        super().__init__()
        if cfg.max_tokens % 4:
            raise UsageError(f"max_tokens must be a multiple of 4 (two x2 poolings), got {cfg.max_tokens}")
        self.cfg = cfg
        self.chars = nn.Embedding(cfg.vocab_size, cfg.char_dim, padding_idx=text.PAD)
        # [B, char_dim, L] -> [B, width, L/2] -> [B, width, L/4]
        self.conv = nn.Sequential(
            nn.Conv1d(cfg.char_dim, cfg.width, 5, padding=2), nn.ReLU(True), nn.MaxPool1d(2),
            nn.Conv1d(cfg.width, cfg.width, 5, padding=2), nn.ReLU(True), nn.MaxPool1d(2),
        )
        self.rnn = nn.GRU(cfg.width, cfg.width, batch_first=True)
        self.out = nn.Linear(cfg.width, cfg.embedding_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        check_shape(tokens, (None, self.cfg.max_tokens), "TextEncoder tokens")
        tokens = tokens.clamp(0, self.cfg.vocab_size - 1)  # ids past the vocabulary read as the last id
        h = self.conv(self.chars(tokens).transpose(1, 2))              # [B, width, L/4]
        states, _ = self.rnn(h.transpose(1, 2))                        # [B, L/4, width]
        # a pooled step holds text if any of its 4 characters is not padding
        mask = F.max_pool1d((tokens != text.PAD).float()[:, None], 4)  # [B, 1, L/4]
        mask = mask.transpose(1, 2)                                    # [B, L/4, 1]
        mean = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)     # [B, width]; all padding -> 0
        return self.out(mean)                                          # [B, E]


class ImageEncoder(nn.Module):
    """phi(v): image [B, 3, S, S] in [-1, 1] -> [B, E], for the joint embedding only (not exported)."""

    def __init__(self, embedding_dim: int, *, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2, True),               # S/2
            nn.Conv2d(width, width * 2, 4, 2, 1), nn.LeakyReLU(0.2, True),       # S/4
            nn.Conv2d(width * 2, width * 2, 3, 1, 1), nn.LeakyReLU(0.2, True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width * 2, embedding_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def joint_embedding_loss(img: torch.Tensor, txt: torch.Tensor, classes: torch.Tensor, *,
                         temperature: float = 0.1) -> torch.Tensor:
    """Symmetric class-structured compatibility loss over a batch: img, txt [B, E], classes [B]."""
    scores = F.normalize(img, dim=1) @ F.normalize(txt, dim=1).T / temperature  # [B, B]
    same = (classes[:, None] == classes[None, :]).float()
    target = same / same.sum(1, keepdim=True)   # every text of the image's class is a match (and vice versa)
    return 0.5 * (-(target * scores.log_softmax(1)).sum(1).mean()
                  - (target.T * scores.T.log_softmax(1)).sum(1).mean())


@dataclass(frozen=True)
class PretrainResult:
    encoder: TextEncoder
    steps: int
    wall_time: float
    probe_accuracy: float   # held-out prompts whose digit and colour the probes read correctly
    description: str


def pretrain(data, cfg: TextEncoderConfig, *, steps: int = 1500, batch_size: int = 128, lr: float = 1e-3,
             seed: int = 0, log_every: int = 100, log=print) -> PretrainResult:
    """Joint image-text embedding pre-training on a :class:`training.data.captions.CaptionedSet`."""
    from training.data.images import to_unit_range
    from training.data.sampler import BatchSampler

    torch.manual_seed(seed)
    enc, img = TextEncoder(cfg), ImageEncoder(cfg.embedding_dim)
    probes = nn.ModuleDict({k: nn.Linear(cfg.embedding_dim, int(v.max()) + 1) for k, v in data.attributes.items()})
    params = [*enc.parameters(), *img.parameters(), *probes.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    sampler = BatchSampler(len(data), batch_size=batch_size, seed=seed)
    g = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for step in range(1, steps + 1):
        idx = sampler.next_indices()
        k = torch.randint(0, data.caption_ids.shape[1], (len(idx),), generator=g)
        tokens = data.tokens[data.caption_ids[idx, k]]
        t = enc(tokens)
        loss = joint_embedding_loss(img(to_unit_range(data.images[idx])), t, data.classes[idx])
        aux = sum((F.cross_entropy(probes[name](t), values[idx]) for name, values in data.attributes.items()),
                  torch.zeros(()))
        opt.zero_grad(set_to_none=True)
        (loss + aux).backward()
        opt.step()
        if step % log_every == 0 or step == steps:
            log(f"text encoder step {step}/{steps}: joint loss {loss.item():.3f}, probes {aux.item():.3f}, "
                f"{time.perf_counter() - started:.0f}s")
    enc.eval()
    return PretrainResult(enc, steps, time.perf_counter() - started, _probe_accuracy(enc, probes, data),
                          data.description)


@torch.no_grad()
def _probe_accuracy(enc: TextEncoder, probes: nn.ModuleDict, data) -> float:
    """Fraction of held-out prompts (all combinations, seen or not) whose every attribute the probes read
    correctly from the embedding; NaN for sets without attributes."""
    if not data.attributes:
        return float("nan")
    from training.data.captions import N_COLOURS, N_DIGITS, heldout_prompts

    prompts, truth = [], []
    for d in range(N_DIGITS):
        for c in range(N_COLOURS):
            prompts += heldout_prompts(d, c, 4, seed=1)
            truth += [(d, c)] * 4
    e = enc(torch.from_numpy(text.encode_batch(prompts, length=enc.cfg.max_tokens)))
    pred = torch.stack([probes["digit"](e).argmax(1), probes["colour"](e).argmax(1)], 1)
    return float((pred == torch.tensor(truth)).all(1).float().mean())


def save_encoder(result: PretrainResult, path: str | Path, *, meta: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"version": ENCODER_VERSION, "config": asdict(result.encoder.cfg),
                "state_dict": result.encoder.state_dict(), "steps": result.steps,
                "wall_time": result.wall_time, "probe_accuracy": result.probe_accuracy,
                "data": result.description, "meta": meta or {}}, path)
    return path


def load_encoder_file(path: str | Path, cfg: TextEncoderConfig) -> dict:
    """The saved encoder at ``path``, checked against the architecture ``cfg``."""
    saved = torch_load(path, what="text encoder", expected="a file written by `ganserve train-text-encoder`")
    if not isinstance(saved, dict) or saved.get("version") != ENCODER_VERSION:
        raise UsageError(f"{path} is not a ganserve text encoder (version {ENCODER_VERSION})")
    if TextEncoderConfig(**saved["config"]) != cfg:
        raise UsageError(f"text encoder {path} has architecture {saved['config']}, the model config needs "
                         f"{asdict(cfg)}; pre-train it with the same preset")
    return saved


def cli(argv: list[str]) -> int:
    import shlex

    from training.cli import _Parser
    from training.config import apply_overrides, preset, validate

    p = _Parser(prog="ganserve train-text-encoder",
                description="Pre-train the char-CNN-RNN text encoder with the joint image-text embedding.")
    p.add_argument("--preset", default="text2img-colour-mnist", help="a gan-int-cls preset (data and model)")
    p.add_argument("--data", help="data folder (colour-mnist: the MNIST IDX files)")
    p.add_argument("--out", required=True, help="where to write the encoder (.pt)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    args = p.parse_args(argv)
    overrides = list(args.overrides) + ([f"data.path={args.data}"] if args.data else [])
    cfg = validate(apply_overrides(preset(args.preset), overrides))
    if cfg.model.family != "gan-int-cls":
        raise UsageError(f"preset {args.preset} is not a gan-int-cls preset")
    if args.steps < 1 or args.batch_size < 2:
        raise UsageError("--steps must be >= 1 and --batch-size >= 2")
    from training.families import get_family

    family = get_family(cfg)
    data = family.load_captioned()
    result = pretrain(data, family.encoder_config(), steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                      seed=args.seed)
    out = save_encoder(result, args.out, meta={"argv": "ganserve train-text-encoder " + shlex.join(argv)})
    print(f"wrote {out}: {result.steps} steps in {result.wall_time:.0f}s; held-out prompts read correctly "
          f"by the attribute probes: {result.probe_accuracy:.3f}")
    return 0
