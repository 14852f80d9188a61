#!/usr/bin/env bash
# Runs every check and test with the provisioned binaries (make test calls this after
# hack/provision.sh), then verifies that no process started by the tests is still running.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TESTBIN=${ETCD_OPERATOR_TESTBIN:-$HOME/.cache/etcd-operator/testbin}
# shellcheck disable=SC1091
source "$TESTBIN/env.sh"
# shellcheck disable=SC1091
source "$TESTBIN/stores-env.sh"  # object-store servers (hack/provision-stores.sh)
# One build per run: incremental caches only cost disk here (18 of 28 GB of target/debug).
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

echo "== rustfmt"
cargo fmt --all -- --check
status=0

echo "== static binary (what the Dockerfile ships and the test node's operator image holds)"
make --no-print-directory static || status=$?

# The in-cluster e2e suite (tests/e2e_*.rs) runs against one real node per run: started here in
# the background while clippy compiles, stopped by the trap whatever happens.
NODE_LOG=${ETCD_OPERATOR_CLUSTER:-$HOME/.cache/etcd-operator/cluster}-up.log
node_pid=
node_down() {
  if [ -n "$node_pid" ]; then wait "$node_pid" 2>/dev/null || true; fi
  hack/node.sh down >>"$NODE_LOG" 2>&1 || echo "hack/node.sh down failed (see $NODE_LOG)" >&2
}
trap node_down EXIT
echo "== test node (hack/node.sh up in the background, log: $NODE_LOG)"
hack/node.sh up >"$NODE_LOG" 2>&1 &
node_pid=$!

echo "== clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== build the tests"
cargo test --all-targets --no-run --quiet || status=$?
if wait "$node_pid"; then
  tail -1 "$NODE_LOG"
else
  echo "the test node did not come up: the e2e tests will fail. Last lines of $NODE_LOG:" >&2
  tail -20 "$NODE_LOG" >&2
  status=1
fi
echo "== cargo test"
cargo test --all-targets --no-fail-fast -- --test-threads="${TEST_THREADS:-4}" || status=$?

echo "== doc tests and rustdoc warnings"
cargo test --doc --quiet || status=$?
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet || status=$?

echo "== leftover processes"
# Every harness directory is named etcd-operator-test-*; nothing started from one may survive.
if leftovers=$(pgrep -af 'etcd-operator-test-' | grep -v -e pgrep -e 'hack/test.sh'); then
  echo "processes started by the tests are still running:" >&2
  echo "$leftovers" >&2
  pkill -9 -f 'etcd-operator-test-' || true
  status=1
else
  echo "none"
fi
exit $status
