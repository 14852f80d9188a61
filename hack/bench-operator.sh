#!/usr/bin/env bash
# `make bench-operator`: the local operator (`etcd-operator local`) measured against the floor of
# the same safe steps run by hand with etcdctl and process starts, plus its idle cost per managed
# cluster and its reaction times. The harness is benches/operator/ (`cargo bench --bench
# operator`, release build); it prints `figure ...` and `ratio ...` lines (medians of the rounds).
#
# Env: BENCH_ROUNDS (3) lifecycle rounds; BENCH_IDLE_SECS (30) idle window; BENCH_IDLE_CLUSTERS
# (1,10,50); BENCH_FROM/BENCH_TO (3.6.16 → 3.7.3) the rolling-upgrade versions;
# BENCH_HEARTBEAT_MS/BENCH_ELECTION_MS (100/1000) the etcd timing both sides use.
# A default run takes about 7 minutes on 2 cores.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TESTBIN=${ETCD_OPERATOR_TESTBIN:-$HOME/.cache/etcd-operator/testbin}

log() { printf 'bench-operator: %s\n' "$*" >&2; }
die() { printf 'bench-operator: error: %s\n' "$*" >&2; exit 1; }

[ -f "$TESTBIN/env.sh" ] || "$ROOT/hack/provision.sh" etcd
# shellcheck disable=SC1091
source "$TESTBIN/env.sh"
for v in "${BENCH_FROM:-3.6.16}" "${BENCH_TO:-3.7.3}"; do
  [ -x "$ETCD_VERSIONS_DIR/etcd-$v/bin/etcd" ] || die "no etcd $v under $ETCD_VERSIONS_DIR (hack/provision.sh etcd)"
done

log "building the operator and the harness (release)"
cd "$ROOT"
cargo bench --bench operator --no-run --quiet || die "building benches/operator failed"
log "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
exec cargo bench --bench operator --quiet
