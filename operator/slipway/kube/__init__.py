"""The only layer of slipway that talks to the Kubernetes API."""

from slipway.kube.client import Conflict, Forbidden, Kube, ObjectRef, Rejected

__all__ = ["Conflict", "Forbidden", "Kube", "ObjectRef", "Rejected"]
