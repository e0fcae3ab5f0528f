#!/usr/bin/env bash
# Builds Argo Rollouts' controller from the version pinned in hack/argo-rollouts/go.mod (v1.10.1)
# into the same directory as the control plane and the serving stack, as argo-rollouts-controller
# (upstream calls it rollouts-controller; the prefix keeps it apart from anything else on the
# PATH). Only bench/compare_argo.py uses it (its analysis controller beside slipway's), so neither
# `make test` nor `make demo` builds it: `make argo-rollouts`. Skipped when its stamp matches
# (hack/build-lib.sh); Go's build cache in $HOME keeps later rebuilds to what changed.
# Built with nice and one package at a time by default (GOFLAGS=-p=1 unless GOFLAGS already says
# -p): it is a bench tool, and the machine is usually busy with other work.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/build-lib.sh
source "$here/build-lib.sh"
bin="${SLIPWAY_BIN:-$HOME/.cache/slipway/bin}"
stamp="$bin/.argo-rollouts-stamp"
require_go build-argo-rollouts

argo_version=$(cd "$here/argo-rollouts" && go list -m -f '{{.Version}}' github.com/argoproj/argo-rollouts)
# Argo's Makefile stamps its version package the same way (version without the leading v); the
# controller logs it at start-up.
ldflags="-s -w -X github.com/argoproj/argo-rollouts/utils/version.version=${argo_version#v}"
want=$(stamp_of "$ldflags" "$here/argo-rollouts/go.mod" "$here/argo-rollouts/go.sum")

if up_to_date "$bin" "$stamp" "$want" argo-rollouts-controller; then
  echo "build-argo-rollouts: $bin is up to date (stamp $want)"
  exit 0
fi

case " ${GOFLAGS:-} " in
  *" -p="*) ;;
  *) export GOFLAGS="${GOFLAGS:+$GOFLAGS }-p=1" ;;
esac

mkdir -p "$bin"
echo "build-argo-rollouts: building Argo Rollouts $argo_version's controller into $bin (GOFLAGS=$GOFLAGS)"
start=$SECONDS
rm -f "$stamp"
# CGO_ENABLED=0 as upstream's Makefile builds it.
(cd "$here/argo-rollouts" && CGO_ENABLED=0 nice go build -trimpath -ldflags="$ldflags" \
  -o "$bin/argo-rollouts-controller" github.com/argoproj/argo-rollouts/cmd/rollouts-controller)
echo "$want" >"$stamp"
echo "build-argo-rollouts: done in $((SECONDS - start))s"
