"""``python -m rdconfvae.bench``."""

from rdconfvae.bench.cli import main

raise SystemExit(main())
