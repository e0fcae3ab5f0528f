//go:build tools

// Package tools pins Knative Serving's controller, webhook, autoscaler, activator and queue-proxy
// for the local serving stack, built by hack/build-knative.sh. v0.48.1 is the release KServe
// v0.20.0 requires; Knative Serving's go.mod has no replace lines, so there are none to repeat.
package tools

import (
	_ "knative.dev/serving/cmd/activator"
	_ "knative.dev/serving/cmd/autoscaler"
	_ "knative.dev/serving/cmd/controller"
	_ "knative.dev/serving/cmd/queue"
	_ "knative.dev/serving/cmd/webhook"
)
