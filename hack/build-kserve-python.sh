#!/usr/bin/env bash
# Builds the venv the local executor (devenv/slipway_dev/localexec) runs KServe's Python images with:
# kserve/storage-initializer (KServe's initializer-entrypoint script + kserve-storage) and
# kserve/sklearnserver (python -m sklearnserver + the kserve SDK + scikit-learn), at the
# versions pinned in hack/kserve/python-requirements.txt, which match the KServe release in
# hack/kserve/go.mod. The scripts and servers that are not on PyPI run from that Go module's
# python/ directory, which is linked into the venv as `kserve-src`.
#
# It is its own venv, not the project's .venv: kserve >= 0.20 does not fit alibi-detect's pins.
# A stamp in the venv records sha256(requirements, the base interpreter, the module dir, this
# script); when it matches and the venv's interpreter runs, nothing is installed (seconds).
# Otherwise the venv is recreated: about a minute with pip's cache in $HOME warm, a few
# minutes cold.
#
# Env: SLIPWAY_KSERVE_VENV (default ~/.cache/slipway/venvs/kserve, the executor's
# --kserve-venv), KSERVE_PYTHON_BASE (the interpreter to build from; default the first of
# python3.11, python3.12 on PATH that runs).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv="${SLIPWAY_KSERVE_VENV:-$HOME/.cache/slipway/venvs/kserve}"
requirements="$here/kserve/python-requirements.txt"
stamp="$venv/.slipway-stamp"

if ! command -v go >/dev/null 2>&1; then
  echo "build-kserve-python: go not found on PATH (needed to find KServe's module in hack/kserve/go.mod)" >&2
  exit 1
fi
module=$(cd "$here/kserve" && go list -m -f '{{.Dir}}' github.com/kserve/kserve)
if [[ -z "$module" || ! -d "$module/python" ]]; then
  echo "build-kserve-python: downloading KServe's module"
  (cd "$here/kserve" && go mod download github.com/kserve/kserve)
  module=$(cd "$here/kserve" && go list -m -f '{{.Dir}}' github.com/kserve/kserve)
fi
for f in python/storage-initializer/scripts/initializer-entrypoint python/sklearnserver/sklearnserver/__main__.py; do
  if [[ ! -f "$module/$f" ]]; then
    echo "build-kserve-python: $module has no $f" >&2
    exit 1
  fi
done

# kserve 0.20 wants Python >= 3.10, < 3.13; the pins (numpy 2.4, scipy 1.17) want >= 3.11.
base="${KSERVE_PYTHON_BASE:-}"
if [[ -z "$base" ]]; then
  for candidate in python3.11 python3.12; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import venv' >/dev/null 2>&1; then
      base=$candidate
      break
    fi
  done
fi
if [[ -z "$base" ]]; then
  echo "build-kserve-python: no python3.11 or python3.12 on PATH (set KSERVE_PYTHON_BASE)" >&2
  exit 1
fi
if ! "$base" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 13)))'; then
  echo "build-kserve-python: $base is $("$base" -V 2>&1); need 3.11 or 3.12" >&2
  exit 1
fi
base_id=$("$base" -c 'import sys; print(sys.version, sys.base_prefix)')

want=$( {
  cat "$requirements" "${BASH_SOURCE[0]}"
  echo "$base_id"
  echo "$module"
} | sha256sum | cut -d' ' -f1)

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$venv/bin/python" -c '' 2>/dev/null; then
  echo "build-kserve-python: $venv is up to date (stamp $want)"
  exit 0
fi

echo "build-kserve-python: building $venv from $requirements with $base ($("$base" -V 2>&1))"
start=$SECONDS
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
"$base" -m venv "$venv"
# Every version is pinned in the file, so no resolver is needed: --no-deps installs exactly
# that set and `pip check` proves it is complete and consistent.
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input --no-deps -q -r "$requirements"
"$venv/bin/python" -m pip check --disable-pip-version-check
ln -sfn "$module" "$venv/kserve-src"
# The images' imports, as the executor will run them.
"$venv/bin/python" -c 'import kserve, kserve_storage, sklearn, joblib, pandas'
PYTHONPATH="$venv/kserve-src/python/sklearnserver" "$venv/bin/python" -c 'import sklearnserver'
echo "$want" >"$stamp"
echo "build-kserve-python: done in $((SECONDS - start))s ($venv, KServe source $module)"
