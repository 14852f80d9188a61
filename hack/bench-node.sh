#!/usr/bin/env bash
# In-cluster timings for the README (`make bench-node`): on the test node, with the operator
# installed by `helm install`, how long a 3-member EtcdCluster takes from `kubectl apply` to 3/3
# ready, and `kubectl scale --replicas 5` to 5/5 ready. Measured, printed, never asserted.
#
# Uses a running node (make cluster-up) or starts one and stops it afterwards.
# ROUNDS (default 1) repeats both measurements in fresh namespaces; VERSION picks the etcd image.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TESTBIN=${ETCD_OPERATOR_TESTBIN:-$HOME/.cache/etcd-operator/testbin}
CLUSTER=${ETCD_OPERATOR_CLUSTER:-$HOME/.cache/etcd-operator/cluster}
# shellcheck disable=SC1091
source "$TESTBIN/env.sh"
ROUNDS=${ROUNDS:-1}
VERSION=${VERSION:-3.5.35}
export KUBECONFIG=$CLUSTER/kubeconfig
export HELM_CACHE_HOME=$CLUSTER/helm/cache HELM_CONFIG_HOME=$CLUSTER/helm/config HELM_DATA_HOME=$CLUSTER/helm/data

started=0
if ! [ -f "$KUBECONFIG" ] || ! "$KUBECTL" get --raw /readyz >/dev/null 2>&1; then
  hack/node.sh up
  started=1
fi
cleanup() { if [ "$started" = 1 ]; then hack/node.sh down; fi; }
trap cleanup EXIT

if ! "$HELM" status etcd-operator -n etcd-operator-system >/dev/null 2>&1; then
  "$HELM" install etcd-operator charts/etcd-operator -n etcd-operator-system --create-namespace \
    --wait --timeout 5m >/dev/null
fi

now() { date +%s.%N; }
# wait_ready NS N: until the cluster reports N ready members and the Available condition.
wait_ready() {
  local ns=$1 n=$2 ready avail
  for _ in $(seq 1200); do
    ready=$("$KUBECTL" -n "$ns" get etcdcluster bench -o jsonpath='{.status.readyMembers}' 2>/dev/null || true)
    avail=$("$KUBECTL" -n "$ns" get etcdcluster bench \
      -o jsonpath='{.status.conditions[?(@.type=="Available")].status}' 2>/dev/null || true)
    if [ "$ready" = "$n" ] && [ "$avail" = True ]; then return 0; fi
    sleep 0.5
  done
  echo "bench: $ns never reached $n ready" >&2
  return 1
}

printf '%-6s %-22s %-22s\n' round "bootstrap 3 (s)" "scale 3->5 (s)"
for r in $(seq "$ROUNDS"); do
  ns=bench-$r-$RANDOM
  "$KUBECTL" create namespace "$ns" >/dev/null
  t0=$(now)
  "$KUBECTL" -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: etcd.operator.dev/v1alpha1
kind: EtcdCluster
metadata: {name: bench}
spec: {replicas: 3, version: "$VERSION", storage: {size: 256Mi}}
EOF
  wait_ready "$ns" 3
  t1=$(now)
  "$KUBECTL" -n "$ns" scale etcdcluster bench --replicas 5 >/dev/null
  wait_ready "$ns" 5
  t2=$(now)
  awk -v r="$r" -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "%-6s %-22.1f %-22.1f\n", r, b - a, c - b }'
  "$KUBECTL" delete namespace "$ns" --wait=true --timeout=180s >/dev/null
done
echo "(etcd $VERSION, operator $(sed -n 's/^appVersion: *//p' charts/etcd-operator/Chart.yaml), $(nproc) cores)"
