#!/usr/bin/env bash
# Builds Kueue's manager from the version pinned in hack/kueue/go.mod (v0.17.0) into the same
# directory as the control plane and the serving stack, as kueue-manager (upstream calls the
# command after its directory, kueue; the prefix keeps it apart from anything else on the PATH).
# Skipped when its stamp matches (hack/build-lib.sh); Go's build cache in $HOME keeps later
# rebuilds to what changed. Cold: about 7 minutes on 2 busy cores.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/build-lib.sh
source "$here/build-lib.sh"
bin="${SLIPWAY_BIN:-$HOME/.cache/slipway/bin}"
stamp="$bin/.kueue-stamp"
require_go build-kueue

kueue_version=$(cd "$here/kueue" && go list -m -f '{{.Version}}' sigs.k8s.io/kueue)
# Kueue's Makefile stamps its version package the same way; the manager logs it at start-up.
ldflags="-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$kueue_version"
want=$(stamp_of "$ldflags" "$here/kueue/go.mod" "$here/kueue/go.sum")

if up_to_date "$bin" "$stamp" "$want" kueue-manager; then
  echo "build-kueue: $bin is up to date (stamp $want)"
  exit 0
fi

mkdir -p "$bin"
echo "build-kueue: building Kueue $kueue_version's manager into $bin"
start=$SECONDS
rm -f "$stamp"
(cd "$here/kueue" && go build -trimpath -ldflags="$ldflags" -o "$bin/kueue-manager" sigs.k8s.io/kueue/cmd/kueue)
echo "$want" >"$stamp"
echo "build-kueue: done in $((SECONDS - start))s"
