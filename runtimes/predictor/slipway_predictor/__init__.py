"""slipway's predictor runtime: a KServe model server for the ModelVersions the trainer writes."""

__version__ = "0.1.0"
