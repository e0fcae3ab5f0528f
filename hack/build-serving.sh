#!/usr/bin/env bash
# Builds the local serving stack from the versions pinned in hack/kserve/go.mod (KServe's
# controller manager and agent), hack/traefik/go.mod (Traefik, the Gateway API data plane) and
# hack/prometheus/go.mod (Prometheus with Kubernetes service discovery, which Debian's package
# leaves out), into the same directory as the control plane. A stamp records sha256(go.mod +
# go.sum of each, `go version`, ldflags); when it matches and every binary is present nothing is
# asked of go. Cold: about 30 minutes on 2 busy cores (Traefik is the largest); Go's build
# cache in $HOME keeps later rebuilds to what changed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/build-lib.sh
source "$here/build-lib.sh"
bin="${SLIPWAY_BIN:-$HOME/.cache/slipway/bin}"
stamp="$bin/.serving-stamp"
require_go build-serving

traefik_version=$(cd "$here/traefik" && go list -m -f '{{.Version}}' github.com/traefik/traefik/v3)
traefik_ldflags="-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$traefik_version"
# Prometheus' module versions are v0.3MM.P for release 3.MM.P; its own build stamps the latter.
prometheus_module=$(cd "$here/prometheus" && go list -m -f '{{.Version}}' github.com/prometheus/prometheus)
prometheus_version=$(sed -E 's/^v0\.3([0-9]+)\.([0-9]+)$/3.\1.\2/; s/^3\.0*([0-9])/3.\1/' <<<"$prometheus_module")
prometheus_ldflags="-s -w -X github.com/prometheus/common/version.Version=$prometheus_version"
prometheus_ldflags+=" -X github.com/prometheus/common/version.Branch=release"

want=$(stamp_of "$traefik_ldflags $prometheus_ldflags" "$here/kserve/go.mod" "$here/kserve/go.sum" \
  "$here/traefik/go.mod" "$here/traefik/go.sum" "$here/prometheus/go.mod" "$here/prometheus/go.sum")

if up_to_date "$bin" "$stamp" "$want" kserve-manager kserve-agent traefik prometheus promtool; then
  echo "build-serving: $bin is up to date (stamp $want)"
  exit 0
fi

mkdir -p "$bin"
echo "build-serving: building KServe's manager and agent, Traefik $traefik_version and Prometheus $prometheus_version into $bin"
echo "build-serving: a cold build takes about 15 minutes; later builds reuse Go's build cache"
start=$SECONDS
rm -f "$stamp"
# KServe's commands are both called after their directory; prefix them so they cannot be
# mistaken for anything else on the PATH.
(cd "$here/kserve" && go build -trimpath -ldflags='-s -w' -o "$bin/kserve-manager" github.com/kserve/kserve/cmd/manager)
(cd "$here/kserve" && go build -trimpath -ldflags='-s -w' -o "$bin/kserve-agent" github.com/kserve/kserve/cmd/agent)
(cd "$here/traefik" && go build -trimpath -ldflags="$traefik_ldflags" -o "$bin/traefik" github.com/traefik/traefik/v3/cmd/traefik)
(cd "$here/prometheus" && go build -trimpath -ldflags="$prometheus_ldflags" -o "$bin/" \
  github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool)
echo "$want" >"$stamp"
echo "build-serving: done in $((SECONDS - start))s"
