#!/usr/bin/env bash
# Builds the local serving stack from the versions pinned in hack/kserve/go.mod (KServe's
# controller manager and agent) and hack/traefik/go.mod (Traefik, the Gateway API data plane),
# into the same directory as the control plane. A stamp records sha256(go.mod + go.sum of both,
# `go version`, ldflags); when it matches and every binary is present nothing is asked of go.
# Cold: about 15 minutes on 2 cores (Traefik is the larger half); Go's build cache in $HOME
# keeps later rebuilds to what changed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin="${SLIPWAY_BIN:-$HOME/.cache/slipway/bin}"
stamp="$bin/.serving-stamp"

if ! command -v go >/dev/null 2>&1; then
  echo "build-serving: go not found on PATH" >&2
  exit 1
fi

traefik_version=$(cd "$here/traefik" && go list -m -f '{{.Version}}' github.com/traefik/traefik/v3)
traefik_ldflags="-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$traefik_version"

want=$( {
  cat "$here/kserve/go.mod" "$here/kserve/go.sum" "$here/traefik/go.mod" "$here/traefik/go.sum"
  go version
  echo "$traefik_ldflags"
} | sha256sum | cut -d' ' -f1)

binaries=(kserve-manager kserve-agent traefik)
all_present=1
for b in "${binaries[@]}"; do
  [[ -x "$bin/$b" ]] || all_present=0
done

if ((all_present)) && [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "build-serving: $bin is up to date (stamp $want)"
  exit 0
fi

mkdir -p "$bin"
echo "build-serving: building KServe's manager and agent and Traefik $traefik_version into $bin"
echo "build-serving: a cold build takes about 15 minutes; later builds reuse Go's build cache"
start=$SECONDS
rm -f "$stamp"
# KServe's commands are both called after their directory; prefix them so they cannot be
# mistaken for anything else on the PATH.
(cd "$here/kserve" && go build -trimpath -ldflags='-s -w' -o "$bin/kserve-manager" github.com/kserve/kserve/cmd/manager)
(cd "$here/kserve" && go build -trimpath -ldflags='-s -w' -o "$bin/kserve-agent" github.com/kserve/kserve/cmd/agent)
(cd "$here/traefik" && go build -trimpath -ldflags="$traefik_ldflags" -o "$bin/traefik" github.com/traefik/traefik/v3/cmd/traefik)
echo "$want" >"$stamp"
echo "build-serving: done in $((SECONDS - start))s"
