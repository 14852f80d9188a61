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

echo "== rustfmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
status=0
cargo test --all-targets --no-fail-fast -- --test-threads="${TEST_THREADS:-4}" || status=$?

echo "== doc tests and rustdoc warnings"
cargo test --doc --quiet || status=$?
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet || status=$?

echo "== static binary (what the Dockerfile ships: make static, checked by hack/check-static.sh)"
make --no-print-directory static || status=$?

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
