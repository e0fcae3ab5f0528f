//go:build tools

// Package tools pins Argo Rollouts' controller (cmd/rollouts-controller) for bench/compare_argo.py,
// built by hack/build-argo-rollouts.sh. The replace block in go.mod repeats the one in Argo Rollouts
// v1.10.1's go.mod (a dependency's replace lines are not inherited).
package tools

import (
	_ "github.com/argoproj/argo-rollouts/cmd/rollouts-controller"
)
