//go:build tools

// Package tools pins KServe's controller manager and agent (payload logger) for the local
// serving stack, built by hack/build-serving.sh. The replace lines in go.mod repeat KServe
// v0.20.0's own, so the binaries link the libraries KServe was released with.
package tools

import (
	_ "github.com/kserve/kserve/cmd/agent"
	_ "github.com/kserve/kserve/cmd/manager"
)
