"""Named starting points for ``ganserve train --preset NAME``: data, in the style of nanoGPT's
``config/*.py``. The schema is ``training/config.py``; each family's own fields are in its
``training/families/<family>.py``. Any field can be overridden: ``--set section.field=value``.
"""

from __future__ import annotations

from ganserve.errors import UsageError
from ganserve.training.config import DataConfig, RunConfig, TrainConfig
from ganserve.training.families.dcgan import DCGANModelConfig
from ganserve.training.families.gan_int_cls import GANIntClsModelConfig, GANIntClsTrainConfig
from ganserve.training.families.lapgan import LapGANModelConfig
from ganserve.training.families.srgan import SRModelConfig, SRTrainConfig

PRESETS: dict[str, RunConfig] = {
    # DCGAN on full MNIST at its native 28x28.
    "dcgan-mnist": RunConfig(
        data=DataConfig(name="mnist"),
        model=DCGANModelConfig(image_size=28, channels=1, latent_dim=100, g_width=64, d_width=64),
        train=TrainConfig(steps=20_000, batch_size=128),
    ),
    # DCGAN on a folder of RGB images at 64x64, the paper's setting.
    "dcgan-folder64": RunConfig(
        data=DataConfig(name="image-folder"),
        model=DCGANModelConfig(image_size=64, channels=3, latent_dim=100, g_width=64, d_width=64),
        train=TrainConfig(steps=20_000, batch_size=128),
    ),
    # About a minute on a 2-core CPU, on scikit-learn's bundled 8x8 digits, and its grid shows digits:
    # many small steps, a short EMA (0.95; the default 0.999 would still be mostly the random init after
    # a few hundred steps) and a higher learning rate. `ganserve evaluate` measures it against those digits.
    "dcgan-digits-tiny": RunConfig(
        data=DataConfig(name="digits"),
        model=DCGANModelConfig(image_size=8, channels=1, latent_dim=16, g_width=32, d_width=32),
        train=TrainConfig(steps=300, batch_size=32, lr_g=5e-4, lr_d=5e-4, ema_decay=0.95, log_every=20,
                          sample_every=100, checkpoint_every=100, sample_grid=64),
    ),
    # LAPGAN (Denton et al. 2015) on MNIST: 7 -> 14 -> 28 (model_repository/lapgan/README.md says why), small
    # widths for a shared 2-core CPU; the three levels train at once, each on the real coarse images.
    "lapgan-mnist": RunConfig(
        data=DataConfig(name="mnist"),
        model=LapGANModelConfig(image_size=28, channels=1, levels=2, coarse_latent_dim=32, level_latent_dim=16,
                                coarse_width=256, g_width=16, d_width=16),
        train=TrainConfig(steps=8_000, batch_size=64, lr_g=2e-4, lr_d=2e-4, ema_decay=0.998, log_every=50,
                          sample_every=500, checkpoint_every=250),
    ),
    # Seconds on a CPU (tests): scikit-learn's 8x8 digits as a 2 -> 4 -> 8 pyramid, the same three-model
    # ensemble as lapgan-mnist.
    "lapgan-tiny": RunConfig(
        data=DataConfig(name="digits"),
        model=LapGANModelConfig(image_size=8, channels=1, levels=2, coarse_latent_dim=8, level_latent_dim=4,
                                coarse_width=32, g_width=8, d_width=8),
        train=TrainConfig(steps=60, batch_size=32, lr_g=1e-3, lr_d=1e-3, ema_decay=0.9, log_every=20,
                          sample_every=60, checkpoint_every=60, sample_grid=16),
    ),
    # SRResNet (Ledig et al. 2017), stage 1: pixel loss, x4, on the offline photo set. Sized for a CPU
    # (or a short GPU) run; the paper trains 16 blocks on 96x96 HR crops, batch 16, lr 1e-4.
    "srresnet-x4": RunConfig(
        data=DataConfig(name="sr-builtin"),
        model=SRModelConfig(family="srresnet", channels=3, scale=4, blocks=16, g_width=64, image_size=96),
        train=SRTrainConfig(steps=20_000, batch_size=16, lr_g=1e-4, lr_d=1e-4, beta1=0.9, beta2=0.999,
                            pixel_loss="mse", ema_decay=0.999, log_every=50, sample_every=1000,
                            checkpoint_every=500, sample_grid=8),
    ),
    # The shipped x4 model, sized for a 2-core CPU in under an hour: 8 blocks of width 32, L1 loss
    # (faster early PSNR gains than MSE), a higher learning rate and a short EMA to match the short run.
    "srresnet-x4-cpu": RunConfig(
        data=DataConfig(name="sr-builtin"),
        model=SRModelConfig(family="srresnet", channels=3, scale=4, blocks=8, g_width=32, d_width=16,
                            image_size=96),
        train=SRTrainConfig(steps=4_000, batch_size=16, lr_g=5e-4, lr_d=1e-4, beta1=0.9, beta2=0.999,
                            pixel_loss="l1", ema_decay=0.99, log_every=20, sample_every=500,
                            checkpoint_every=100, sample_grid=8),
    ),
    "srresnet-x2": RunConfig(
        data=DataConfig(name="sr-builtin"),
        model=SRModelConfig(family="srresnet", channels=3, scale=2, blocks=16, g_width=64, image_size=64),
        train=SRTrainConfig(steps=20_000, batch_size=16, lr_g=1e-4, lr_d=1e-4, beta1=0.9, beta2=0.999,
                            pixel_loss="mse", ema_decay=0.999, log_every=50, sample_every=1000,
                            checkpoint_every=500, sample_grid=8),
    ),
    # SRGAN, stage 2: adversarial (1e-3) + content loss, G initialised from an SRResNet checkpoint
    # (--set train.init_from=runs/srresnet/checkpoint.pt). Without VGG19 weights the content loss is
    # the pixel loss plus feature matching on D (see training/losses.py).
    "srgan-x4": RunConfig(
        data=DataConfig(name="sr-builtin"),
        model=SRModelConfig(family="srgan", channels=3, scale=4, blocks=16, g_width=64, d_width=64,
                            image_size=96),
        train=SRTrainConfig(steps=5_000, batch_size=16, loss="bce", lr_g=1e-4, lr_d=1e-4, beta1=0.9,
                            beta2=0.999, pixel_loss="mse", content_loss="feature-matching", adv_weight=1e-3,
                            ema_decay=0.999, log_every=50, sample_every=500, checkpoint_every=500,
                            sample_grid=8),
    ),
    # Stage 2 for srresnet-x4-cpu's generator, sized for a CPU: a narrow discriminator (d_width 16);
    # the pixel term keeps the output close to the SRResNet's, feature matching on D (weight 0.1)
    # stands in for the VGG loss without VGG19 weights. The shipped srgan: 2000 steps from the shipped
    # srresnet (--set train.init_from=model_repository/srresnet/1/model.onnx; model_repository/srgan).
    "srgan-x4-cpu": RunConfig(
        data=DataConfig(name="sr-builtin"),
        model=SRModelConfig(family="srgan", channels=3, scale=4, blocks=8, g_width=32, d_width=16,
                            image_size=96),
        train=SRTrainConfig(steps=2_000, batch_size=16, loss="bce", lr_g=1e-4, lr_d=1e-4, beta1=0.9,
                            beta2=0.999, pixel_loss="l1", content_loss="feature-matching", fm_weight=0.1,
                            adv_weight=1e-3, ema_decay=0.99, log_every=10, sample_every=500,
                            checkpoint_every=100, sample_grid=8),
    ),
    # GAN-INT-CLS (Reed et al. 2016) on captioned colour MNIST, 28x28 RGB, sized for a 2-core CPU (about
    # 0.27 s per step). First `ganserve train-text-encoder --data DIR --out runs/text2img-encoder.pt
    # --steps 3000`, then `ganserve train --preset text2img-colour-mnist --data DIR
    # --set train.text_encoder=runs/text2img-encoder.pt` (model_repository/text2img/README.md). Against a
    # generator that ignores z and mixes prompts through blank images: mode seeking (z matters), noise
    # on the text embedding, GAN-INT over U(0, 1) in the fakes' own batch (mixes keep the BatchNorm
    # statistics prompts get) and feature matching.
    "text2img-colour-mnist": RunConfig(
        data=DataConfig(name="colour-mnist", filler_words=0.7, punctuation=0.15),
        model=GANIntClsModelConfig(family="gan-int-cls", image_size=28, channels=3, latent_dim=100, g_width=64,
                                   d_width=64),
        train=GANIntClsTrainConfig(steps=4_500, batch_size=64, loss="bce", lr_g=2e-4, lr_d=2e-4, beta1=0.5,
                                   ema_decay=0.999, ms_weight=0.3, text_noise=0.2, int_beta_random=True,
                                   int_shared_batch=True, feature_match_weight=10.0, log_every=50,
                                   sample_every=500, checkpoint_every=250,
                                   sample_grid=90),  # every (digit, colour): a row per colour, a column per digit
    ),
    # About a minute on a 2-core CPU for each of its two commands, on colour-digits (scikit-learn's 8x8
    # digits, coloured and captioned), and its grid shows digit shapes in the prompts' colours (a row per
    # colour, a column per digit): `ganserve train-text-encoder --preset text2img-tiny --out
    # runs/tiny-encoder.pt --steps 500 --lr 3e-3`, then `ganserve train --preset text2img-tiny --set
    # train.text_encoder=runs/tiny-encoder.pt`. `ganserve evaluate` measures it against those digits.
    "text2img-tiny": RunConfig(
        data=DataConfig(name="colour-digits", captions=5),
        model=GANIntClsModelConfig(family="gan-int-cls", image_size=8, channels=3, latent_dim=16, g_width=32,
                                   d_width=32, text_width=32, embedding_dim=32, text_proj_dim=16),
        train=GANIntClsTrainConfig(steps=1200, batch_size=32, lr_g=2e-3, lr_d=1e-3, ema_decay=0.95, log_every=100,
                                   sample_every=400, checkpoint_every=400, sample_grid=90),
    ),
    # Under a minute on a CPU: x2, 2 blocks of width 16, on 3 of the offline photos. The network learns a
    # residual on bicubic upscaling (model.bicubic_skip), so it starts at bicubic quality and edges past
    # it (L1 loss, lr 1e-3, a short EMA for the short run); from scratch it would stay far below bicubic.
    "srresnet-tiny": RunConfig(
        data=DataConfig(name="sr-builtin", limit=3),
        model=SRModelConfig(family="srresnet", channels=3, scale=2, blocks=2, g_width=16, d_width=8,
                            image_size=32, bicubic_skip=True),
        train=SRTrainConfig(steps=150, batch_size=8, lr_g=1e-3, lr_d=1e-4, beta1=0.9, pixel_loss="l1",
                            ema_decay=0.9, log_every=10, sample_every=50, checkpoint_every=50, sample_grid=4),
    ),
}


def preset(name: str) -> RunConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}") from None
