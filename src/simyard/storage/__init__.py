"""Object storage: model bundles, inputs, outputs and logs (file store; S3 later)."""
