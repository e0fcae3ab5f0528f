"""The only layer of slipway that talks to the Kubernetes API."""

from slipway.kube.client import Conflict, Forbidden, Gone, Kube, ObjectRef, Rejected

__all__ = ["Conflict", "Forbidden", "Gone", "Kube", "ObjectRef", "Rejected"]
