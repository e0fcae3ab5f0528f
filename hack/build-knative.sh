#!/usr/bin/env bash
# Builds Knative Serving's controller, webhook, autoscaler, activator and queue-proxy from the
# version pinned in hack/knative/go.mod (v0.48.1, the release KServe v0.20.0 requires) into the
# same directory as the control plane and the serving stack. Skipped when its stamp matches
# (hack/build-lib.sh); Go's build cache in $HOME keeps later rebuilds to what changed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/build-lib.sh
source "$here/build-lib.sh"
bin="${SLIPWAY_BIN:-$HOME/.cache/slipway/bin}"
stamp="$bin/.knative-stamp"
require_go build-knative

knative_version=$(cd "$here/knative" && go list -m -f '{{.Version}}' knative.dev/serving)
ldflags="-s -w"
want=$(stamp_of "$ldflags" "$here/knative/go.mod" "$here/knative/go.sum")

# Knative's commands are called after their directory (controller, webhook, queue, ...); prefix
# them so they cannot be mistaken for anything else on the PATH.
commands=(controller webhook autoscaler activator queue)
if up_to_date "$bin" "$stamp" "$want" "${commands[@]/#/knative-}"; then
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
