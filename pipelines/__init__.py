"""Top floor: the CLI, the config schema, the runner with its cache and manifests."""
