# Shared by hack/build-*.sh (sourced, not run): the stamp that lets a build script skip go entirely
# when nothing it builds from has changed. A stamp records sha256(the tooling modules' go.mod and
# go.sum, `go version`, the ldflags); it is written only after a successful build and removed
# before one starts, so an interrupted build is never taken for a finished one.
# shellcheck shell=bash

# require_go NAME: stop with a message when go is not on the PATH.
require_go() {
  if ! command -v go >/dev/null 2>&1; then
    echo "$1: go not found on PATH" >&2
    exit 1
  fi
}

# stamp_of LDFLAGS FILE...: the stamp the build of these inputs gets.
stamp_of() {
  local ldflags=$1
  shift
  { cat "$@"; go version; echo "$ldflags"; } | sha256sum | cut -d' ' -f1
}

# up_to_date BIN STAMP_FILE WANT BINARY...: every binary is in BIN and the stamp matches.
up_to_date() {
  local bin=$1 stamp=$2 want=$3
  shift 3
  for b in "$@"; do
    [[ -x "$bin/$b" ]] || return 1
  done
  [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]
}
