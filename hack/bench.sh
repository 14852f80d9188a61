#!/usr/bin/env bash
# `make bench-client`: the project's etcd client against etcd's Go `benchmark` tool (clientv3)
# and the `etcd-client` crate, on the same single-member local etcd, in one run.
#
# Workloads (each client runs each one in a process of its own, one after the other):
#   put     20k puts, 8-byte keys, 256-byte values, 1 connection, 32 concurrent callers
#   get-s   20k single-key serializable gets, 1 connection, 32 callers
#   get-l   20k single-key linearizable gets, 1 connection, 32 callers
#   txn     20k txns of one put (Go: txn-put --txn-ops=1), 1 connection, 32 callers
#   watch   1 writer (its own connection) puts one key 2k times; 100 watchers of that key on one
#           connection; each put waits for all 100 deliveries (Go: watch-latency); ops = deliveries
# For each: QPS, p50/p99 latency, and the client process's CPU time (user+sys, measured from
# outside the same way for all three) per 1k ops. Ends with the `ratio ...` lines.
#
# The three clients take turns (round 1: put go/ours/etcd-client, get-s ..., then round 2 ...);
# each figure is the median over the rounds, so that a burst of load on the machine (which is
# shared) hits one round of one client rather than the result.
# Env: BENCH_TOTAL (20000), BENCH_WATCH_PUTS (2000), BENCH_ROUNDS (5), BENCH_KEEP=1 keeps the
# work dir.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TESTBIN=${ETCD_OPERATOR_TESTBIN:-$HOME/.cache/etcd-operator/testbin}
TOTAL=${BENCH_TOTAL:-20000}
WATCH_PUTS=${BENCH_WATCH_PUTS:-2000}
ROUNDS=${BENCH_ROUNDS:-5}

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

[ -f "$TESTBIN/env.sh" ] || "$ROOT/hack/provision.sh" etcd
[ -f "$TESTBIN/bench-env.sh" ] || "$ROOT/hack/provision.sh" bench
# shellcheck disable=SC1091
source "$TESTBIN/env.sh"
# shellcheck disable=SC1091
source "$TESTBIN/bench-env.sh"
[ -x "$ETCD_GO_BENCHMARK" ] || "$ROOT/hack/provision.sh" bench
[ -x "$ETCD_BIN_DIR/etcd" ] || die "no etcd under $ETCD_BIN_DIR"

log "building the Rust driver (bench/, release; protoc for the etcd-client crate)"
(cd "$ROOT/bench" && PROTOC=$PROTOC LD_LIBRARY_PATH=$PROTOC_LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
  cargo build --release --quiet) || die "building bench/ failed"
DRIVER=$ROOT/bench/target/release/bench-client

# --- one local etcd member ----------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
base=/tmp; [ -w /dev/shm ] && base=/dev/shm
WORK=$(mktemp -d "$base/etcd-bench.XXXXXX")
CPORT=$(free_port); PPORT=$(free_port)
EP=127.0.0.1:$CPORT
ETCD_PID=
cleanup() {
  local rc=$?
  if [ -n "$ETCD_PID" ]; then kill "$ETCD_PID" 2>/dev/null || true; wait "$ETCD_PID" 2>/dev/null || true; fi
  [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
# --unsafe-no-fsync: the disk is not what is measured; the clients are.
"$ETCD_BIN_DIR/etcd" --name bench --data-dir "$WORK/data" \
  --listen-client-urls "http://$EP" --advertise-client-urls "http://$EP" \
  --listen-peer-urls "http://127.0.0.1:$PPORT" --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
  --initial-cluster "bench=http://127.0.0.1:$PPORT" --unsafe-no-fsync \
  --quota-backend-bytes=$((4 * 1024 * 1024 * 1024)) --log-level=error >"$WORK/etcd.log" 2>&1 &
ETCD_PID=$!
for _ in $(seq 100); do
  "$ETCD_BIN_DIR/etcdctl" --endpoints="$EP" endpoint health >/dev/null 2>&1 && break
  sleep 0.2
done
"$ETCD_BIN_DIR/etcdctl" --endpoints="$EP" put bench/get "$(head -c 256 /dev/zero | tr '\0' g)" >/dev/null ||
  die "etcd did not start (see $WORK/etcd.log)"
ETCD_VERSION=$("$ETCD_BIN_DIR/etcd" --version | head -1 | awk '{print $3}')
log "etcd $ETCD_VERSION at $EP, data in $WORK"

# --- running and measuring ----------------------------------------------------------------
ops_of() { if [ "$1" = watch ]; then echo $((WATCH_PUTS * 100)); else echo "$TOTAL"; fi; }
go_cmd() {
  local g=("$ETCD_GO_BENCHMARK" --endpoints="$EP" --conns=1)
  case $1 in
    put) g+=(--clients=32 put --key-size=8 --val-size=256 --total="$TOTAL" --sequential-keys --key-space-size="$TOTAL") ;;
    get-s) g+=(--clients=32 range bench/get --consistency=s --total="$TOTAL") ;;
    get-l) g+=(--clients=32 range bench/get --consistency=l --total="$TOTAL") ;;
    txn) g+=(--clients=32 txn-put --key-size=8 --val-size=256 --txn-ops=1 --total="$TOTAL" --key-space-size="$TOTAL") ;;
    watch) g+=(--clients=100 watch-latency --total="$WATCH_PUTS" --put-rate=1000000 --key-size=11 --val-size=256) ;;
  esac
  printf '%q ' "${g[@]}"
}
rust_cmd() { # client workload
  local n=$TOTAL; [ "$2" = watch ] && n=$WATCH_PUTS
  printf '%q ' "$DRIVER" --client "$1" --endpoint "$EP" --workload "$2" --total "$n" --clients 32 --watchers 100
}
# measure <out-file> <command...>: runs it, appends "cpu_s=<user+sys>" to the output file.
measure() {
  local out=$1; shift
  local TIMEFORMAT='%3U %3S' t
  { time "$@" >"$out" 2>"$out.err"; } 2>"$out.time" || { cat "$out.err" >&2; die "$* failed"; }
  t=$(awk '{printf "%.3f", $1 + $2}' "$out.time")
  echo "cpu_s=$t" >>"$out"
}
# parse <client> <out-file> -> "qps p50_ms p99_ms cpu_s"
parse() {
  if [ "$1" = go ]; then
    awk '/Requests\/sec:/ {q=$2} /^ *50% in/ {p50=$3*1000} /^ *99% in/ {p99=$3*1000}
         /^cpu_s=/ {split($0,a,"="); c=a[2]} END {printf "%s %.3f %.3f %s\n", q, p50, p99, c}' "$2"
  else
    tr ' ' '\n' <"$2" | awk -F= '/^qps=/ {q=$2} /^p50_ms=/ {p50=$2} /^p99_ms=/ {p99=$2} /^cpu_s=/ {c=$2}
         END {printf "%s %s %s %s\n", q, p50, p99, c}'
  fi
}

WORKLOADS=(put get-s get-l txn watch)
CLIENTS=(go ours etcd-client)
declare -A QPS P50 P99 CPU RUNS
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "load before: $LOAD_BEFORE on $(nproc) cores"
for round in $(seq "$ROUNDS"); do
  for w in "${WORKLOADS[@]}"; do
    for c in "${CLIENTS[@]}"; do
      out=$WORK/$c-$w-$round.out
      if [ "$c" = go ]; then eval "measure $out $(go_cmd "$w")"; else eval "measure $out $(rust_cmd "$c" "$w")"; fi
      read -r q p50 p99 cpu < <(parse "$c" "$out")
      [ -n "$q" ] || die "no result from $c $w (see $out)"
      RUNS[$c/$w]+="$q $p50 $p99 $cpu"$'\n'
      log "round $round $w $c: qps=$q p50=${p50}ms p99=${p99}ms cpu=${cpu}s"
    done
  done
done
# Per (client, workload): the median of the rounds, column by column (with one round: that round).
median_col() { awk -v c="$1" 'NF {print $c}' | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
for k in "${!RUNS[@]}"; do
  QPS[$k]=$(median_col 1 <<<"${RUNS[$k]}"); P50[$k]=$(median_col 2 <<<"${RUNS[$k]}")
  P99[$k]=$(median_col 3 <<<"${RUNS[$k]}"); CPU[$k]=$(median_col 4 <<<"${RUNS[$k]}")
done
log "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; etcd $ETCD_VERSION single member (--unsafe-no-fsync) on loopback; $ROUNDS rounds, medians"
echo "# load average before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-12s %11s %9s %9s %16s\n' workload client qps p50_ms p99_ms cpu_ms_per_1k_ops
for w in "${WORKLOADS[@]}"; do
  for c in "${CLIENTS[@]}"; do
    k=$c/$w
    printf '%-6s %-12s %11.1f %9.3f %9.3f %16.2f\n' "$w" "$c" "${QPS[$k]}" "${P50[$k]}" "${P99[$k]}" \
      "$(awk -v c="${CPU[$k]}" -v n="$(ops_of "$w")" 'BEGIN{print c*1e6/n}')"
  done
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", (b>0)? a/b : 0}'; }
# Per workload, then the summary lines. get_qps is the geometric mean of the serializable and
# linearizable ratios; client_cpu_per_op the geometric mean over all five workloads.
for w in "${WORKLOADS[@]}"; do
  echo "ratio ${w}_qps vs go: $(ratio "${QPS[ours/$w]}" "${QPS[go/$w]}")"
  echo "ratio ${w}_qps vs etcd-client: $(ratio "${QPS[ours/$w]}" "${QPS[etcd-client/$w]}")"
  echo "ratio ${w}_cpu_per_op vs go: $(ratio "${CPU[ours/$w]}" "${CPU[go/$w]}")"
  echo "ratio ${w}_cpu_per_op vs etcd-client: $(ratio "${CPU[ours/$w]}" "${CPU[etcd-client/$w]}")"
done
geo() { awk 'BEGIN{s=0; n=0} {s+=log($1); n++} END{printf "%.2f", exp(s/n)}'; }
echo "ratio put_qps vs go: $(ratio "${QPS[ours/put]}" "${QPS[go/put]}")"
echo "ratio get_qps vs go: $(for w in get-s get-l; do ratio "${QPS[ours/$w]}" "${QPS[go/$w]}"; echo; done | geo)"
echo "ratio client_cpu_per_op vs go: $(for w in "${WORKLOADS[@]}"; do ratio "${CPU[ours/$w]}" "${CPU[go/$w]}"; echo; done | geo)"
echo "ratio put_qps vs etcd-client: $(ratio "${QPS[ours/put]}" "${QPS[etcd-client/put]}")"
