#!/usr/bin/env bash
# Installs the system packages the local control plane needs and Go cannot build for us:
# etcd (the apiserver's storage), Prometheus, and nftables (`nft`: the NAT and forward filter
# of the local executor's pod network namespaces, devenv/slipway_dev/localexec/podnet.py; `ip`, `nsenter` and
# `unshare` come with iproute2 and util-linux, which every Debian has). Idempotent: a machine that already has
# both does nothing, not even an `apt-get update`, so this is cheap to call from make targets.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# package name -> a file the package installs; dpkg-query is the authority, the file is a
# cheap sanity check that the package was not half-removed.
declare -A wanted=(
  [etcd-server]=/usr/bin/etcd
  [prometheus]=/usr/bin/prometheus
  [nftables]=/usr/sbin/nft
)

installed() {
  local status
  status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)
  [[ "$status" == "install ok installed" && -x "${wanted[$1]}" ]]
}

missing=()
for pkg in "${!wanted[@]}"; do
  if installed "$pkg"; then
    echo "install-system-deps: $pkg already installed (${wanted[$pkg]})"
  else
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-system-deps: nothing to do"
  exit 0
fi

if ((EUID == 0)); then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo -n)  # -n: fail instead of prompting; this script must work with no stdin
else
  echo "install-system-deps: need root (or sudo) to install: ${missing[*]}" >&2
  exit 1
fi

# A fresh machine (or a slim container image) has no package lists; apt-get install would
# then fail with "Unable to locate package". Update only in that case, to stay fast.
needs_update=0
for pkg in "${missing[@]}"; do
  candidate=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [[ -z "$candidate" || "$candidate" == "(none)" ]]; then
    needs_update=1
  fi
done
if ((needs_update)); then
  echo "install-system-deps: apt-get update"
  "${sudo[@]}" apt-get update -q </dev/null
fi

echo "install-system-deps: apt-get install ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null

for pkg in "${missing[@]}"; do
  if ! installed "$pkg"; then
    echo "install-system-deps: $pkg still missing after apt-get install" >&2
    exit 1
  fi
done
echo "install-system-deps: done"
