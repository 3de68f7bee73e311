"""ganserve.training.data.sr: the built-in photo set and aligned (LR, HR) crops."""

import numpy as np
import pytest
import torch

from ganserve.errors import UsageError
from ganserve.training.config import DataConfig
from ganserve.training.data.sr import SR_BUILTIN_TEST, SR_BUILTIN_TRAIN, bicubic_resize, load_sr_dataset


def test_builtin_held_out_images_are_never_trained_on():
    assert not set(SR_BUILTIN_TRAIN) & set(SR_BUILTIN_TEST)


def test_crops_are_aligned_augmented_and_reproducible(photo_dir):
    data = load_sr_dataset(DataConfig(name="sr-folder", path=str(photo_dir)), scale=4, lr_patch=8, seed=3)
    idx = torch.arange(0, len(data), max(1, len(data) // 40))
    lr, hr = data.crops(idx)
    assert lr.shape == (len(idx), 3, 8, 8) and hr.shape == (len(idx), 3, 32, 32) and lr.dtype == torch.uint8
    # the LR crop is the bicubic downscaling of its HR crop (up to the image-wide filter's edge effects)
    for a, b in zip(lr, hr):
        down = bicubic_resize(b.permute(1, 2, 0).numpy(), (8, 8)).astype(float)
        assert np.abs(down[2:-2, 2:-2] - a.permute(1, 2, 0).numpy()[2:-2, 2:-2]).mean() < 6
    again, _ = data.crops(idx)
    assert torch.equal(lr, again)  # index -> crop is a pure function: resumed runs see the same crops
    other = load_sr_dataset(DataConfig(name="sr-folder", path=str(photo_dir)), scale=4, lr_patch=8, seed=4)
    assert not torch.equal(other.crops(idx)[0], lr)


def test_too_small_images_and_bad_folders_are_usage_errors(photo_dir, tmp_path):
    with pytest.raises(UsageError, match="smaller than"):
        load_sr_dataset(DataConfig(name="sr-folder", path=str(photo_dir)), scale=4, lr_patch=40)
    with pytest.raises(UsageError, match="no images"):
        load_sr_dataset(DataConfig(name="sr-folder", path=str(tmp_path)), scale=4, lr_patch=8)
