#!/usr/bin/env bash
# `make demo`: the operator drives a local 3-member etcd cluster (the "local" runtime) from
# examples/local/demo.yaml, in the foreground until Ctrl-C. Edit `replicas` in that file while it
# runs to scale; the state (ports, data, status.yaml) stays in $STATE_DIR, so the next
# `make demo` resumes the same cluster.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TESTBIN=${ETCD_OPERATOR_TESTBIN:-$HOME/.cache/etcd-operator/testbin}
# shellcheck disable=SC1091
source "$TESTBIN/env.sh"
STATE_DIR=${STATE_DIR:-.state}
MANIFEST=${MANIFEST:-examples/local/demo.yaml}
CLUSTER=${CLUSTER:-demo}
STATUS="$STATE_DIR/default/$CLUSTER/status.yaml"
TLS_DIR="$STATE_DIR/default/$CLUSTER/tls"

cargo build --quiet
rm -f "$STATUS" # written afresh by the operator's first pass
./target/debug/etcd-operator local --manifest "$MANIFEST" --state-dir "$STATE_DIR" \
  --etcd-bin-dir "$TESTBIN" &
operator=$!
# Ctrl-C and SIGTERM go to the operator, which stops the members gracefully and keeps their data.
trap 'kill -INT "$operator" 2>/dev/null || true' INT TERM

healthy() { [ -f "$STATUS" ] && grep -q '^phase: Healthy' "$STATUS"; }
for _ in $(seq 1 240); do
  healthy && break
  kill -0 "$operator" 2>/dev/null || break
  sleep 0.5
done
if healthy; then
  endpoints=$(grep 'clientUrl:' "$STATUS" | awk '{print $2}' | paste -sd, -)
  creds=""
  if [ -d "$TLS_DIR" ]; then
    creds=" --cacert=$TLS_DIR/ca.crt --cert=$TLS_DIR/client.crt --key=$TLS_DIR/client.key"
  fi
  if [ -f "$STATE_DIR/default/$CLUSTER/root-password" ]; then
    # Auth is turned on right after the cluster is healthy: wait for the status to say so.
    for _ in $(seq 1 40); do grep -q '^  enabled: true' "$STATUS" && break; sleep 0.5; done
    creds="$creds --user=root:\$(cat $STATE_DIR/default/$CLUSTER/root-password)"
  fi
  cat <<MSG

  etcd cluster "$CLUSTER" is up: $(grep -c 'clientUrl:' "$STATUS") members
  endpoints: $endpoints
  status:    $STATUS

  try:   $ETCD_BIN_DIR/etcdctl --endpoints=$endpoints$creds member list -w table
         $ETCD_BIN_DIR/etcdctl --endpoints=$endpoints$creds put hello world
  scale: edit 'replicas:' in $MANIFEST (1 to 9) and watch the log
  stop:  Ctrl-C (members stop gracefully; the data stays in $STATE_DIR)

MSG
fi
status=0
wait "$operator" || status=$?
# `wait` returns early when the trap fires: wait for the operator's graceful stop to finish.
while kill -0 "$operator" 2>/dev/null; do wait "$operator" || status=$?; done
exit "$status"
