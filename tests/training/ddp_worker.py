"""Run by test_distributed under torchrun: a few DDP steps, then each rank records what it holds."""

import hashlib
import json
import sys
from pathlib import Path

import torch

from ganserve.training.families import apply_overrides
from ganserve.training.loop import Trainer
from ganserve.training.presets import preset

out = Path(sys.argv[1])
torch.set_num_threads(1)
cfg = apply_overrides(preset("dcgan-digits-tiny"), ["train.steps=4", "train.batch_size=16"])
trainer = Trainer(cfg, out_dir=out)
first_batch = trainer.sampler.next_indices().tolist()
trainer.sampler.load_state_dict({"epoch": 0, "position": 0})
trainer.fit()
trainer.save_checkpoint()  # a no-op on ranks other than 0
trainer.close()
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in trainer.G.parameters())).hexdigest()
(out / f"rank{trainer.dist.rank}.json").write_text(json.dumps(
    {"world": trainer.dist.world, "g_sha256": digest, "first_batch": first_batch, "step": trainer.state.step}))
