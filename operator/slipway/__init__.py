"""slipway: a Kubernetes operator for the whole life of an ML model."""

__version__ = "0.1.0"
