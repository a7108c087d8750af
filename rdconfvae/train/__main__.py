"""``python -m rdconfvae.train`` (also ``torchrun -m rdconfvae.train``)."""

from rdconfvae.train.cli import main

raise SystemExit(main())
