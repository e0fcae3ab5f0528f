//go:build tools

// Package tools pins Prometheus, built by hack/build-serving.sh. Debian's prometheus package
// (2.42) leaves Kubernetes service discovery out, and the local cluster discovers KServe's
// predictor pods through the apiserver as a cluster's Prometheus does.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
