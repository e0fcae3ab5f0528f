"""slipway's trainer runtime: reads a dataset, trains, evaluates, writes the artifact and its manifest to S3."""

__version__ = "0.1.0"
