//go:build tools

// Package tools pins Kueue's manager for the local batch-admission stack, built by
// hack/build-kueue.sh. Kueue v0.17.0's go.mod has no replace or exclude lines, so there are none
// to repeat.
package tools

import (
	_ "sigs.k8s.io/kueue/cmd/kueue"
)
