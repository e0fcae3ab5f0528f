#!/usr/bin/env bash
# Builds the local control plane binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kube-proxy) from the versions pinned in hack/controlplane/go.mod, and kwok
# from hack/controlplane/kwok/go.mod (its own module: kwok v0.7.0 does not compile against
# the v1.34 client libraries, see kwok/tools.go).
#
# A cold build takes 10-20 minutes on 2 cores, so a stamp file next to the binaries records
# sha256(both go.mod + go.sum + `go version` + ldflags); when it matches and every binary is present the
# build is skipped without even asking go (whose own up-to-date check still costs seconds).
# Go's build cache stays in its default place under $HOME, so a rebuild after a pin change
# only recompiles what changed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src="$here/controlplane"
bin="${SLIPWAY_BIN:-$HOME/.cache/slipway/bin}"
stamp="$bin/.build-stamp"

# Commands built from hack/controlplane ...
kube_packages=(
  k8s.io/kubernetes/cmd/kube-apiserver
  k8s.io/kubernetes/cmd/kube-controller-manager
  k8s.io/kubernetes/cmd/kube-scheduler
  k8s.io/kubernetes/cmd/kubectl
  k8s.io/kubernetes/cmd/kube-proxy
)
# ... and from hack/controlplane/kwok.
kwok_packages=(
  sigs.k8s.io/kwok/cmd/kwok
)
packages=("${kube_packages[@]}" "${kwok_packages[@]}")

if ! command -v go >/dev/null 2>&1; then
  echo "build-controlplane: go not found on PATH (need Go >= the version in $src/go.mod)" >&2
  exit 1
fi

# Stamp the Kubernetes version into the binaries the way Kubernetes' own build does
# (hack/lib/version.sh); a plain `go build` reports v0.0.0-master, which clients that check
# the server version (kubectl's skew warning, Helm's kubeVersion) take at face value.
kube_version=$(cd "$src" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
IFS=. read -r kube_major kube_minor _ <<<"${kube_version#v}"
kube_ldflags="-s -w"
for var in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  kube_ldflags+=" -X $var.gitVersion=$kube_version -X $var.gitMajor=$kube_major -X $var.gitMinor=$kube_minor"
  kube_ldflags+=" -X $var.gitTreeState=clean"
done

want=$( {
  cat "$src/go.mod" "$src/go.sum" "$src/kwok/go.mod" "$src/kwok/go.sum"
  go version
  echo "$kube_ldflags"
} | sha256sum | cut -d' ' -f1)

all_present=1
for pkg in "${packages[@]}"; do
  [[ -x "$bin/$(basename "$pkg")" ]] || all_present=0
done

if ((all_present)) && [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "build-controlplane: $bin is up to date (stamp $want)"
  exit 0
fi

mkdir -p "$bin"
echo "build-controlplane: building ${#packages[@]} binaries (Kubernetes $kube_version) into $bin ($(go version | cut -d' ' -f3))"
echo "build-controlplane: a cold build takes 10-20 minutes; later builds reuse Go's build cache"
start=$SECONDS
# Write the stamp only after a successful build, and remove a stale one first, so an
# interrupted build is never mistaken for a finished one.
rm -f "$stamp"
(cd "$src" && go build -trimpath -ldflags="$kube_ldflags" -o "$bin/" "${kube_packages[@]}")
(cd "$src/kwok" && go build -trimpath -ldflags='-s -w' -o "$bin/" "${kwok_packages[@]}")
echo "$want" >"$stamp"
echo "build-controlplane: done in $((SECONDS - start))s"
ls -l "$bin"
