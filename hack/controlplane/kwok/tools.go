//go:build tools

// Package tools pins kwok for the local control plane.
//
// kwok lives in its own module, apart from ../go.mod: kwok v0.7.0 is written against
// k8s.io/apimachinery v0.33 and does not compile against v0.34 (it uses
// metav1.InitialEventsListBlueprintAnnotationKey, removed in v0.34), while the control
// plane itself is pinned to v1.34. A separate module lets each keep the versions it was
// released with; kwok talks to the apiserver over the API, so client/server skew is fine.
package tools

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
