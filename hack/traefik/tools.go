//go:build tools

// Package tools pins Traefik, the Gateway API data plane of the local serving stack, built by
// hack/build-serving.sh. go.mod repeats Traefik v3.6.12's replace and exclude lines.
package tools

import (
	_ "github.com/traefik/traefik/v3/cmd/traefik"
)
