"""The interface every generator family implements: what differs between DCGAN, GAN-INT-CLS and
SRGAN, behind one class.

The training loop (``ganserve.training.loop``) is family-agnostic. A :class:`Family` knows its own config
classes and how to validate them, how to build its networks and data, how to score a batch with the
discriminator, the generator's loss, what to sample for the grid, and what its exported ONNX model
looks like. Each family is one module of this package, registered in ``training/families/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ganserve.training.config import ModelConfig, RunConfig, TrainConfig
from ganserve.training.data.images import ImageSet, load_dataset, to_unit_range
from ganserve.training.ema import EMA
from ganserve.training.losses import AdversarialLoss

Critic = Callable[..., torch.Tensor]  # D with instance noise applied to its image input


@dataclass
class DStepOut:
    real_logits: torch.Tensor
    fake_logits: torch.Tensor
    real_images: torch.Tensor      # for the gradient penalty
    fake_images: torch.Tensor
    gp_critic: Callable[[torch.Tensor], torch.Tensor]  # critic as a function of images only
    carry: dict[str, Any] = field(default_factory=dict)  # reused by the G step (e.g. the fakes)


@dataclass(frozen=True)
class ExportSpec:
    """What the exported ONNX model looks like (see docs/model-contract.md)."""

    kind: str
    inputs: dict[str, tuple[int | str, ...]]   # name -> shape; a string names a dynamic axis ("batch", ...)
    outputs: dict[str, tuple[int | str, ...]]
    metadata: dict[str, str]
    example_sizes: dict[str, int] = field(default_factory=dict)  # sizes used to trace dynamic axes
    # sizes of the non-batch dynamic axes to check ONNX/PyTorch parity at (one check per entry)
    parity_sizes: tuple[dict[str, int], ...] = ({},)
    example_distribution: str = "normal"  # random test inputs: "normal" (N(0, 1)) or "uniform" ([0, 1))
    # config.pbtxt dims (without batch) where Triton should see fixed shapes although the ONNX axes are
    # dynamic; tensors not named here get the ONNX dims with -1 for dynamic
    config_dims: dict[str, tuple[int, ...]] = field(default_factory=dict)
    config_note: str = ""  # comment lines for the top of config.pbtxt (why dims are what they are)
    # integer inputs (INT64), name -> exclusive upper bound of the random ids used to trace and check them
    int_inputs: dict[str, int] = field(default_factory=dict)
    # a part of a Triton ensemble: its tensor name -> the ensemble's tensor name (unnamed ones keep theirs)
    ensemble_map: dict[str, str] = field(default_factory=dict)
    ensemble_exposed: bool = False  # the ensemble outputs this part's outputs too (the last part's always)
    # The output is Where(keep, a, b) and b costs a pass of its own (dcgan's truncation anchors): export b
    # behind an ONNX If, computed only when some row needs it (ganserve.training.export.lazy_output)
    lazy_output: bool = False
    # Parity is also checked with inputs whose rows are scaled by these factors (cycling over the rows,
    # and each factor for a whole batch): e.g. dcgan's truncated (shorter) z as well as untruncated ones
    parity_row_scales: tuple[float, ...] = ()


class Family:
    name = ""                     # the registry name: model.family
    kind = ""                     # the model's kind (docs/model-contract.md): what is served, what evaluate measures
    model_config: type[ModelConfig] = ModelConfig  # the family's "model" section: ModelConfig + its own fields
    train_config: type[TrainConfig] = TrainConfig  # the family's "train" section
    datasets: tuple[str, ...] = ()  # the data.name values it trains on
    checks_mode_collapse = True   # compare sample diversity with real data's (unconditional sampling)
    calibration = (256, 32)       # (batch, batches) of sample_inputs that recompute the EMA's BatchNorm stats

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.data: Any = None     # the training data, set by the Trainer (or loaded on demand)

    @classmethod
    def validate_config(cls, cfg: RunConfig) -> None:
        """Reject impossible values of the family's own fields (:class:`UsageError`, one clear message);
        the shared fields are checked by ``ganserve.training.config.validate_shared``."""

    # networks and data
    def build_generator(self) -> nn.Module:
        raise NotImplementedError

    def build_discriminator(self) -> nn.Module | None:
        raise NotImplementedError

    def load_data(self) -> ImageSet:
        return load_dataset(self.cfg.data, image_size=self.cfg.model.image_size,
                            channels=self.cfg.model.channels)

    def batch(self, data: ImageSet, idx: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        return {"images": to_unit_range(data.images[idx].to(device, non_blocking=True))}

    # one step
    def d_step(self, *, G: nn.Module, critic: Critic, batch: dict, gen: torch.Generator,
               keep_graph: bool) -> DStepOut:
        raise NotImplementedError

    def g_loss(self, *, G: nn.Module, critic: Critic, batch: dict, adv: AdversarialLoss,
               gen: torch.Generator, carry: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    # sampling and export
    def sample_inputs(self, n: int, *, gen: torch.Generator, device: torch.device) -> torch.Tensor:
        raise NotImplementedError

    def export_spec(self) -> ExportSpec:
        raise NotImplementedError

    def render_samples(self, G: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] for the sample grid, from ``sample_inputs``."""
        return G(inputs)

    def standing_generator(self, ema: EMA, *, device: torch.device) -> nn.Module:
        """The EMA generator with standing BatchNorm statistics, in eval mode: what is sampled, evaluated
        and exported. The statistics come from ``calibration`` batches of :meth:`sample_inputs` drawn
        with a fixed seed, so one checkpoint always gives the same model."""
        gen = torch.Generator(device=device).manual_seed(12345)
        batch, batches = self.calibration
        ema.recalibrate_batchnorm(lambda: self.sample_inputs(batch, gen=gen, device=device), batches=batches)
        return ema.model.eval()

    def export_parts(self, G: nn.Module) -> list[tuple[str, nn.Module, ExportSpec]]:
        """(name suffix, module, spec) of each ONNX model the export writes, in data-flow order. One part
        (suffix ``""``) is a plain model; several are chained by a Triton ensemble under the plain name."""
        return [("", G, self.export_spec())]
