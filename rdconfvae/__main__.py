from rdconfvae.cli import main

raise SystemExit(main())
