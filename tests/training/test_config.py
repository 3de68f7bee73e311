"""ganserve.training.config (the schema), ganserve.training.presets and the family-aware config steps in
ganserve.training.families: overrides, family switching, saved configs old and new."""

import pytest

from ganserve.errors import UsageError
from ganserve.training.config import DataConfig, RunConfig, TrainConfig
from ganserve.training.families import apply_overrides, config_from_dict, validate
from ganserve.training.families.dcgan import DCGANModelConfig
from ganserve.training.families.gan_int_cls import GANIntClsModelConfig, GANIntClsTrainConfig
from ganserve.training.families.srgan import SRModelConfig, SRTrainConfig
from ganserve.training.presets import PRESETS, preset

# a config dict as saved before each family had its own config classes: one flat "model" and one flat
# "train" section holding every family's fields (the defaults of that time)
FLAT_MODEL = {"family": "dcgan", "image_size": 28, "channels": 1, "latent_dim": 100, "g_width": 64, "d_width": 64,
              "d_norm": "batch", "spectral_norm": False, "scale": 4, "blocks": 16, "tile_size": 64,
              "tile_overlap": 8, "max_tokens": 64, "text_width": 128, "embedding_dim": 128, "text_proj_dim": 128}
FLAT_TRAIN = {**TrainConfig().__dict__, "pixel_loss": "mse", "content_loss": "pixel", "vgg_weights": None,
              "vgg_layer": "relu5_4", "content_weight": 0.006, "fm_weight": 1.0, "adv_weight": 1e-3,
              "text_encoder": None, "int_beta": 0.5, "int_weight": 1.0}


@pytest.mark.parametrize("family,model,train", [
    ("dcgan", DCGANModelConfig(channels=1), TrainConfig()),
    ("srresnet", SRModelConfig(channels=1, image_size=28), SRTrainConfig()),
    ("srgan", SRModelConfig(family="srgan", channels=1, image_size=28), SRTrainConfig()),
    ("gan-int-cls", GANIntClsModelConfig(channels=1, image_size=28), GANIntClsTrainConfig()),
])
def test_flat_config_dicts_of_every_family_still_load(family, model, train):
    d = {"data": DataConfig().__dict__, "model": {**FLAT_MODEL, "family": family}, "train": dict(FLAT_TRAIN)}
    assert config_from_dict(d) == RunConfig(data=DataConfig(), model=model, train=train)


def test_old_config_dicts_without_newer_fields_still_load():
    d = {"data": DataConfig().__dict__, "model": {**FLAT_MODEL, "family": "srresnet"}, "train": dict(FLAT_TRAIN)}
    for section, keys in (("model", ("scale", "blocks", "tile_size", "tile_overlap")),
                          ("train", ("pixel_loss", "content_loss", "vgg_weights", "init_from", "adv_weight"))):
        for k in keys:
            del d[section][k]
    assert config_from_dict(d) == RunConfig(data=DataConfig(), model=SRModelConfig(channels=1, image_size=28),
                                            train=SRTrainConfig())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid_and_round_trips_through_its_dict(name):
    cfg = validate(preset(name))
    assert config_from_dict(cfg.to_dict()) == cfg


def test_a_familys_fields_exist_only_for_that_family():
    assert apply_overrides(preset("srresnet-tiny"), ["model.scale=4"]).model.scale == 4
    with pytest.raises(UsageError, match="unknown field model.scale; valid fields: family, image_size"):
        apply_overrides(preset("dcgan-digits-tiny"), ["model.scale=4"])
    with pytest.raises(UsageError, match="unknown field train.text_encoder"):
        apply_overrides(preset("srresnet-tiny"), ["train.text_encoder=enc.pt"])


def test_switching_family_keeps_the_shared_fields_whatever_the_order():
    cfg = apply_overrides(preset("dcgan-digits-tiny"), ["model.scale=2", "data.name=sr-builtin", "model.family=srresnet",
                                                        "model.channels=3", "train.pixel_loss=l1"])
    assert isinstance(cfg.model, SRModelConfig) and isinstance(cfg.train, SRTrainConfig)
    assert (cfg.model.family, cfg.model.scale, cfg.train.pixel_loss) == ("srresnet", 2, "l1")
    assert cfg.model.g_width == preset("dcgan-digits-tiny").model.g_width
    assert cfg.train.steps == preset("dcgan-digits-tiny").train.steps
    validate(apply_overrides(cfg, ["model.image_size=16"]))
    with pytest.raises(UsageError, match="unknown model family 'stylegan'; valid families: dcgan, srresnet, srgan, "
                                         "gan-int-cls"):
        apply_overrides(preset("dcgan-mnist"), ["model.family=stylegan"])


@pytest.mark.parametrize("overrides,message", [
    (["model.d_norm=group"], "unknown model.d_norm 'group'; valid: batch, layer, none"),
    (["model.latent_dim=0"], "model.latent_dim must be positive"),
    (["model.z_norm=layer"], "unknown model.z_norm 'layer'; valid: none, pixel"),
    (["data.name=sr-builtin"], ("model.family=dcgan cannot train on data.name=sr-builtin: it trains on mnist, "
                                "image-folder, digits")),
    (["data.name=cifar"], "unknown data set 'cifar'; valid data sets: mnist"),
])
def test_config_errors_name_the_valid_choices(overrides, message):
    with pytest.raises(UsageError, match=message):
        validate(apply_overrides(preset("dcgan-digits-tiny"), overrides))


def test_z_norm_is_refused_where_the_generator_would_ignore_it():
    with pytest.raises(UsageError, match="model.z_norm applies to the dcgan family, not 'gan-int-cls'"):
        validate(apply_overrides(preset("text2img-tiny"), ["model.z_norm=pixel"]))


def test_truncation_anchor_settings_are_checked():
    with pytest.raises(UsageError, match="model.truncation_radius in \\(0, 1\\], got 200 and 1.5"):
        validate(apply_overrides(preset("dcgan-mnist"), ["model.truncation_radius=1.5"]))
