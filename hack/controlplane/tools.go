//go:build tools

// Package tools pins the Kubernetes commands built for the local control plane.
// kwok is pinned separately in kwok/ (its own module: it needs older client libraries).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
