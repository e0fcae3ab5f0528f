#!/usr/bin/env bash
# Builds Knative Serving's controller, webhook, autoscaler, activator and queue-proxy from the
# version pinned in hack/knative/go.mod (v0.48.1, the release KServe v0.20.0 requires) into the
# same directory as the control plane and the serving stack. A stamp records sha256(go.mod +
# go.sum, `go version`, ldflags); when it matches and every binary is present nothing is asked
# of go. Go's build cache in $HOME keeps later rebuilds to what changed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin="${SLIPWAY_BIN:-$HOME/.cache/slipway/bin}"
stamp="$bin/.knative-stamp"

if ! command -v go >/dev/null 2>&1; then
  echo "build-knative: go not found on PATH" >&2
  exit 1
fi

knative_version=$(cd "$here/knative" && go list -m -f '{{.Version}}' knative.dev/serving)
ldflags="-s -w"

want=$( {
  cat "$here/knative/go.mod" "$here/knative/go.sum"
  go version
  echo "$ldflags"
} | sha256sum | cut -d' ' -f1)

# Knative's commands are called after their directory (controller, webhook, queue, ...); prefix
# them so they cannot be mistaken for anything else on the PATH.
commands=(controller webhook autoscaler activator queue)
all_present=1
for c in "${commands[@]}"; do
  [[ -x "$bin/knative-$c" ]] || all_present=0
done

if ((all_present)) && [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "build-knative: $bin is up to date (stamp $want)"
  exit 0
fi

mkdir -p "$bin"
echo "build-knative: building Knative Serving $knative_version (${commands[*]}) into $bin"
start=$SECONDS
rm -f "$stamp"
for c in "${commands[@]}"; do
  (cd "$here/knative" && go build -trimpath -ldflags="$ldflags" -o "$bin/knative-$c" "knative.dev/serving/cmd/$c")
done
echo "$want" >"$stamp"
echo "build-knative: done in $((SECONDS - start))s"
