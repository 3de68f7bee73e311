"""Generator and discriminator networks, one file per family; shared blocks in ``layers``."""
