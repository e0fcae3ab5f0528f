#!/usr/bin/env bash
# Builds helm from the version of helm.sh/helm/v3 pinned in hack/helm/go.mod into
# ~/.cache/slipway/bin (next to the control plane binaries), for the chart checks
# (tests/unit/test_chart.py, tests/integration/test_chart.py).
#
# Like hack/build-controlplane.sh: a stamp file next to the binary records
# sha256(go.mod + go.sum + `go version` + ldflags); when it matches and helm is present the build
# is skipped without asking go. Go's build cache stays in its default place under $HOME, so a
# rebuild after a pin change only recompiles what changed. A cold build takes 2-5 minutes on 2 cores.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src="$here/helm"
bin="${SLIPWAY_BIN:-$HOME/.cache/slipway/bin}"
stamp="$bin/.helm-build-stamp"
package=helm.sh/helm/v3/cmd/helm

if ! command -v go >/dev/null 2>&1; then
  echo "build-helm: go not found on PATH (need Go >= the version in $src/go.mod)" >&2
  exit 1
fi

# Stamp the versions the way helm's own Makefile does: without them `helm version` reports a bare
# "v3.NN" and helm assumes Kubernetes v1.20 for .Capabilities.KubeVersion when rendering offline
# (`helm template`) and for its deprecation lint; helm takes both from its client-go version.
helm_version=$(cd "$src" && go list -m -f '{{.Version}}' helm.sh/helm/v3)
client_go=$(cd "$src" && go list -m -f '{{.Version}}' k8s.io/client-go)
IFS=. read -r cg_major cg_minor _ <<<"${client_go#v}"
k8s_major=$((cg_major + 1))
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
ldflags+=" -X helm.sh/helm/v3/internal/version.metadata= -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=$k8s_major -X $pkg.k8sVersionMinor=$cg_minor"
done

want=$( {
  cat "$src/go.mod" "$src/go.sum"
  go version
  echo "$ldflags"
} | sha256sum | cut -d' ' -f1)

if [[ -x "$bin/helm" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "build-helm: $bin/helm is up to date (stamp $want)"
  exit 0
fi

mkdir -p "$bin"
echo "build-helm: building helm $helm_version into $bin ($(go version | cut -d' ' -f3))"
start=$SECONDS
# Write the stamp only after a successful build, and remove a stale one first, so an
# interrupted build is never mistaken for a finished one.
rm -f "$stamp"
(cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$bin/helm" "$package")
echo "$want" >"$stamp"
echo "build-helm: done in $((SECONDS - start))s"
"$bin/helm" version --short
