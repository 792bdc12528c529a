"""`python -m feature_assets.cli`: the same as the `feature-assets` command."""

from feature_assets.cli import main

raise SystemExit(main())
