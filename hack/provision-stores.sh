#!/usr/bin/env bash
# Provisions the object-store servers the snapshot-store tests (tests/store_*.rs) run against,
# cached by version under ~/.cache/etcd-operator/testbin/<tool>-<version>/ (override with
# ETCD_OPERATOR_TESTBIN), like hack/provision.sh (which calls this script from its `all` target):
#
#   versitygw        S3 gateway (posix backend), built static from its Go module
#   fake-gcs-server  Google Cloud Storage emulator, built static from its Go module
#   azurite          Azure Storage emulator (blob service), the npm package installed with the
#                    machine's npm into the cache (needs node >= 18)
#
# Idempotent: a tool whose folder holds a `.done` stamp is not fetched or built again.
# Writes $TESTBIN/stores-env.sh (sourced by hack/test.sh) with the paths the harness reads:
# VERSITYGW, FAKE_GCS_SERVER, AZURITE_BLOB.
set -euo pipefail

TESTBIN=${ETCD_OPERATOR_TESTBIN:-$HOME/.cache/etcd-operator/testbin}
VERSITYGW_VERSION=1.8.0
FAKE_GCS_VERSION=1.56.1
AZURITE_VERSION=3.37.0

log() { printf 'provision-stores: %s\n' "$*" >&2; }
die() { printf 'provision-stores: error: %s\n' "$*" >&2; exit 1; }

mkdir -p "$TESTBIN"

go_env() {
  command -v go >/dev/null || die "go not found: Go is needed to build versitygw and fake-gcs-server"
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
}

# go_tool <name> <module path> <version>: `go install module@version` into <name>-<version>/bin.
go_tool() {
  local name=$1 pkg=$2 v=$3 dir=$TESTBIN/$1-$3
  [ -f "$dir/.done" ] && return 0
  go_env
  log "$name v$v from its Go module ($pkg)"
  rm -rf "$dir"; mkdir -p "$dir/bin"
  GOBIN="$dir/bin" go install -trimpath -ldflags "-s -w" "$pkg@v$v" >&2 || die "building $name failed"
  [ -x "$dir/bin/$name" ] || die "$name: no binary at $dir/bin/$name"
  touch "$dir/.done"
}

provision_azurite() {
  local dir=$TESTBIN/azurite-$AZURITE_VERSION
  [ -f "$dir/.done" ] && return 0
  command -v npm >/dev/null || die "npm not found: node >= 18 and npm are needed for azurite"
  log "azurite $AZURITE_VERSION from npm"
  rm -rf "$dir"; mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --omit=dev --loglevel=error "azurite@$AZURITE_VERSION" >&2 ||
    die "installing azurite failed"
  [ -x "$dir/node_modules/.bin/azurite-blob" ] || die "azurite: no azurite-blob in $dir"
  touch "$dir/.done"
}

go_tool versitygw github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_VERSION"
go_tool fake-gcs-server github.com/fsouza/fake-gcs-server "$FAKE_GCS_VERSION"
provision_azurite

cat > "$TESTBIN/stores-env.sh" <<EOF
export VERSITYGW=$TESTBIN/versitygw-$VERSITYGW_VERSION/bin/versitygw
export FAKE_GCS_SERVER=$TESTBIN/fake-gcs-server-$FAKE_GCS_VERSION/bin/fake-gcs-server
export AZURITE_BLOB=$TESTBIN/azurite-$AZURITE_VERSION/node_modules/.bin/azurite-blob
EOF
