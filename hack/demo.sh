#!/usr/bin/env bash
# `make demo`: the operator drives a local 3-member etcd cluster (the "local" runtime).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TESTBIN=${ETCD_OPERATOR_TESTBIN:-$HOME/.cache/etcd-operator/testbin}
# shellcheck disable=SC1091
source "$TESTBIN/env.sh"
cargo build --release --quiet
if ! ./target/release/etcd-operator local --help >/dev/null 2>&1; then
  echo "make demo: the local runtime ('etcd-operator local', issue 6) is not built yet." >&2
  echo "Provisioned etcd is at $ETCD_BIN_DIR; 'make test' runs the client and harness suites." >&2
  exit 1
fi
exec ./target/release/etcd-operator local --manifest examples/local/demo.yaml \
  --state-dir "${STATE_DIR:-.state}" --etcd-bin-dir "$TESTBIN"
