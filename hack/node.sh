#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, for `make cluster-up` / `make cluster-down` and
# the in-cluster e2e suite (tests/e2e_*.rs). Every binary and image comes from hack/provision.sh
# (`provision.sh node`); the operator image is written here from `make static`'s binary.
#
#   hack/node.sh up      start the node (needs root), load every image, write the kubeconfig to
#                        ~/.cache/etcd-operator/cluster/kubeconfig and leave it running
#   hack/node.sh down    stop it and undo everything `up` did to the host
#   hack/node.sh images  (re)build and load the operator image only (node must be up)
#
# What runs: etcd (loopback), kube-apiserver, kube-controller-manager, kube-scheduler,
# containerd + runc with a CNI bridge, kubelet, kube-proxy (iptables), CoreDNS and
# local-path-provisioner (its `standard` StorageClass is the default one). Pods reach pod and
# service addresses only: CoreDNS has no `forward`, the bridge does no masquerade, and a FORWARD
# guard drops anything else a pod sends.
#
# Host quirks this handles (see README, "Real node and in-cluster tests"):
#  - no `dummy` link type on some kernels: the node address sits on a bridge with no ports;
#  - no CAP_SYS_RESOURCE for root on some VMs: containerd clamps oom_score_adj
#    (restrict_oom_score_adj) instead of failing every sandbox;
#  - kubelet sets sysctls, creates /var/lib/kubelet and other host folders, and leaves iptables
#    chains behind: `up` records the state before, `down` restores it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TESTBIN=${ETCD_OPERATOR_TESTBIN:-$HOME/.cache/etcd-operator/testbin}
CLUSTER=${ETCD_OPERATOR_CLUSTER:-$HOME/.cache/etcd-operator/cluster}
ST=$CLUSTER/state          # everything the running node writes; removed by `down`
LOGS=$CLUSTER/logs         # kept after `down`, for post-mortems
PKI=$ST/pki
PIDS=$ST/pids
KUBECONFIG_OUT=$CLUSTER/kubeconfig

NODE=e2e-node
NODE_IF=eo-node0           # holds the node address (not loopback: Endpoints refuse 127.0.0.0/8)
NODE_IP=10.250.0.1
BRIDGE=eo-br0
POD_CIDR=10.244.0.0/24
SVC_CIDR=10.96.0.0/16
KUBE_SVC_IP=10.96.0.1
DNS_IP=10.96.0.10
API_PORT=6443              # on NODE_IP only
# Control-plane etcd on loopback below 12000: the local runtime's port blocks are 12000-32000 and
# the test harnesses take ephemeral ports (32768+) on 127.0.0.1.
ETCD_CLIENT_PORT=11379
ETCD_PEER_PORT=11380
GUARD=EO-NODE-GUARD
CHART_TAG=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$ROOT/charts/etcd-operator/Chart.yaml")
OPERATOR_IMAGE=ghcr.io/etcd-operator/etcd-operator:$CHART_TAG
OPERATOR_BIN=${OPERATOR_BIN:-$ROOT/target/x86_64-unknown-linux-gnu/release/etcd-operator}
# Host settings kubelet or this script change, and host folders they create.
SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables vm.overcommit_memory vm.panic_on_oom
  kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
HOST_DIRS=(/var/lib/kubelet /var/lib/cni /run/containerd /run/netns /var/log/containers /var/log/pods
  /run/kubernetes /etc/cni /opt/cni)

log() { printf '[node %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

load_env() {
  [ -f "$TESTBIN/env.sh" ] || die "$TESTBIN/env.sh missing: run hack/provision.sh node"
  # shellcheck disable=SC1091
  source "$TESTBIN/env.sh"
  if [ -z "${NODE_RUNTIME_DIR:-}" ]; then
    # env.sh written by a provision.sh without the node's parts: write it again (cached: quick).
    "$ROOT/hack/provision.sh" node >&2 || die "hack/provision.sh node failed"
    # shellcheck disable=SC1091
    source "$TESTBIN/env.sh"
  fi
  KBIN=$NODE_KUBE_BIN_DIR
  RT=$NODE_RUNTIME_DIR
  ETCD_DIR=$ETCD_3_6_BIN_DIR
  export PATH=$RT/bin:$KBIN:$(dirname "$KUBECTL"):$NODE_TOOLS_PATH:$PATH
  SOCK=$ST/containerd/containerd.sock
  CTR=(ctr --address "$SOCK" --namespace k8s.io)
  CRICTL=(crictl --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" --timeout 10s)
  ADMIN=$ST/kubeconfig/admin.kubeconfig
}

# start NAME CMD...: detached, own session, output to $LOGS/NAME.log, PID in $PIDS/NAME.pid.
start() {
  local name=$1; shift
  mkdir -p "$PIDS" "$LOGS"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
}
# stop NAME [GRACE]: SIGTERM the recorded PID, SIGKILL after GRACE seconds.
stop() {
  local name=$1 grace=${2:-10} pid i
  [ -f "$PIDS/$name.pid" ] || return 0
  pid=$(cat "$PIDS/$name.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 5; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then log "$name: SIGKILL $pid"; kill -9 "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$PIDS/$name.pid"
}
# wait_for DESC SECONDS CMD...
wait_for() {
  local desc=$1 secs=$2 i; shift 2
  for ((i = 0; i < secs * 2; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  die "$desc: not ready after ${secs}s (logs: $LOGS)"
}
running() { [ -f "$PIDS/$1.pid" ] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

# --- certificates and kubeconfigs -----------------------------------------------------------
cert() { # cert NAME SUBJECT EXTENDED-KEY-USAGE [SUBJECT-ALT-NAMES]
  local name=$1 subject=$2 eku=$3 san=${4:-}
  openssl req -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -out "$PKI/$name.csr" \
    -subj "$subject" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    if [ -n "$san" ]; then echo "subjectAltName=$san"; fi
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 30 -out "$PKI/$name.crt" -extfile "$PKI/$name.ext" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}
kubeconfig() { # kubeconfig USER: a kubeconfig with the user's certificate embedded
  local user=$1 file=$ST/kubeconfig/$1.kubeconfig
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://$NODE_IP:$API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$user.crt")
    client-key-data: $(base64 -w0 "$PKI/$user.key")
contexts:
- name: e2e
  context: {cluster: e2e, user: $user}
current-context: e2e
EOF
  chmod 0600 "$file"
}
make_pki() {
  mkdir -p "$PKI" "$ST/kubeconfig"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 30 \
    -subj "/CN=etcd-operator-e2e-ca" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  cert apiserver "/CN=kube-apiserver" serverAuth \
    "IP:$KUBE_SVC_IP,IP:$NODE_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:$NODE"
  cert kubelet-serving "/CN=$NODE" serverAuth "IP:$NODE_IP,DNS:$NODE"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  cert admin "/O=system:masters/CN=e2e-admin" clientAuth
  cert controller-manager "/CN=system:kube-controller-manager" clientAuth
  cert scheduler "/CN=system:kube-scheduler" clientAuth
  cert kube-proxy "/CN=system:kube-proxy" clientAuth
  cert kubelet "/O=system:nodes/CN=system:node:$NODE" clientAuth
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  local u
  for u in admin controller-manager scheduler kube-proxy kubelet; do kubeconfig "$u"; done
}

# --- images ---------------------------------------------------------------------------------
operator_image() {
  [ -x "$OPERATOR_BIN" ] || die "$OPERATOR_BIN missing: run make static"
  mkdir -p "$ST/images"
  # The Dockerfile's final stage: one static binary, UID 65532, same entrypoint and command.
  python3 "$ROOT/hack/mkimage.py" --out "$ST/images/operator.tar" --tag "$OPERATOR_IMAGE" \
    --base-files --user 65532:65532 --entrypoint /usr/local/bin/etcd-operator --cmd run \
    --file "$OPERATOR_BIN:/usr/local/bin/etcd-operator" \
    --label "org.opencontainers.image.version=$CHART_TAG"
  "${CTR[@]}" images import "$ST/images/operator.tar" >/dev/null
  log "loaded $OPERATOR_IMAGE"
}
load_images() {
  local t
  for t in "$NODE_IMAGES_DIR"/*.tar; do "${CTR[@]}" images import "$t" >/dev/null; done
  operator_image
}

# --- up -------------------------------------------------------------------------------------
record_host() {
  local k d
  for k in "${SYSCTLS[@]}"; do echo "$k=$(sysctl -n "$k")"; done >"$CLUSTER/sysctl.orig"
  local c
  for c in /sys/fs/cgroup/*/; do HOST_DIRS+=("${c}kubepods"); done
  for d in "${HOST_DIRS[@]}"; do
    if [ -e "$d" ]; then echo "$d existed"; else echo "$d absent"; fi
  done >"$CLUSTER/dirs.orig"
  nft list tables >"$CLUSTER/nft.orig"
}

network_up() {
  # This kernel may have no `dummy` link type: a bridge without ports holds a /32 just as well.
  ip link add "$NODE_IF" type dummy 2>/dev/null || ip link add "$NODE_IF" type bridge
  ip addr add "$NODE_IP/32" dev "$NODE_IF"
  ip link set "$NODE_IF" up
  sysctl -qw net.ipv4.ip_forward=1
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
}

apiserver_up() {
  start kube-apiserver "$KUBE_APISERVER" \
    --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-address="$NODE_IP" --bind-address="$NODE_IP" --secure-port="$API_PORT" \
    --cert-dir="$ST/apiserver" --service-cluster-ip-range="$SVC_CIDR" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" --kubelet-certificate-authority="$PKI/ca.crt" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true --profiling=false --v=1
  wait_for kube-apiserver 90 kubectl --kubeconfig="$ADMIN" get --raw /readyz
  local kc=$ST/kubeconfig
  start kube-controller-manager "$KBIN/kube-controller-manager" \
    --kubeconfig="$kc/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$kc/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$kc/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --cert-dir="$ST/controller-manager" --leader-elect=false \
    --use-service-account-credentials=true --service-account-private-key-file="$PKI/sa.key" \
    --root-ca-file="$PKI/ca.crt" --cluster-signing-cert-file="$PKI/ca.crt" \
    --cluster-signing-key-file="$PKI/ca.key" --service-cluster-ip-range="$SVC_CIDR" \
    --allocate-node-cidrs=false --profiling=false --v=1
  start kube-scheduler "$KBIN/kube-scheduler" \
    --kubeconfig="$kc/scheduler.kubeconfig" \
    --authentication-kubeconfig="$kc/scheduler.kubeconfig" \
    --authorization-kubeconfig="$kc/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --cert-dir="$ST/scheduler" --leader-elect=false --profiling=false --v=1
}

containerd_up() {
  mkdir -p "$ST/containerd" "$ST/cni/net.d" "$ST/cni/ipam" "$ST/cni/cache"
  cat >"$ST/containerd/config.toml" <<EOF
version = 2
root = "$ST/containerd/root"
state = "$ST/containerd/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "etcd-operator.local/pause:3.10"
  enable_selinux = false
  disable_apparmor = true
  # Some VMs give root no CAP_SYS_RESOURCE: lowering a container's oom_score_adj (the pause
  # container asks for -998) fails and runc dies with "can't get final child's PID from pipe".
  # Clamp to the current value instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$RT/bin/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$RT/cni"
    conf_dir = "$ST/cni/net.d"
    max_conf_num = 1
EOF
  # Pods on one bridge, addresses from host-local; no masquerade: nothing is meant to leave.
  cat >"$ST/cni/net.d/10-e2e.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "e2e",
  "plugins": [{
    "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {"type": "host-local", "dataDir": "$ST/cni/ipam",
             "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}
  }]
}
EOF
  start containerd "$RT/bin/containerd" --config "$ST/containerd/config.toml"
  wait_for containerd 30 "${CTR[@]}" version
}

kubelet_up() {
  mkdir -p "$ST/kubelet" "$ST/pod-logs"
  cat >"$ST/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$SOCK
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: ""
podLogsDir: $ST/pod-logs
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
serializeImagePulls: false
maxPods: 80
EOF
  start kubelet "$KBIN/kubelet" --config="$ST/kubelet.yaml" \
    --kubeconfig="$ST/kubeconfig/kubelet.kubeconfig" --root-dir="$ST/kubelet" \
    --cert-dir="$ST/kubelet/pki" --hostname-override="$NODE" --node-ip="$NODE_IP" --v=1
  wait_for "node registration" 90 kubectl --kubeconfig="$ADMIN" get node "$NODE"
}

proxy_up() {
  cat >"$ST/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $ST/kubeconfig/kube-proxy.kubeconfig}
hostnameOverride: $NODE
mode: iptables
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [$NODE_IP/32]
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  start kube-proxy "$KBIN/kube-proxy" --config="$ST/kube-proxy.yaml" --v=1
  wait_for "kube-proxy rules" 60 sh -c "iptables -t nat -S KUBE-SERVICES | grep -q default/kubernetes:https"
  # Pod traffic may go to pods and services only. Inserted after kube-proxy's rules, at
  # position 1; kube-proxy only checks that its own jumps exist and leaves the order alone.
  iptables -N "$GUARD"
  iptables -A "$GUARD" -s "$POD_CIDR" -d "$POD_CIDR" -j RETURN
  iptables -A "$GUARD" -s "$POD_CIDR" -d "$SVC_CIDR" -j RETURN
  iptables -A "$GUARD" -s "$POD_CIDR" -j DROP
  iptables -I FORWARD 1 -j "$GUARD"
}

addons_up() {
  mkdir -p "$ST/local-path"
  local f
  for f in "$ROOT"/hack/node/*.yaml; do
    sed -e "s#@LOCAL_PATH_DIR@#$ST/local-path#g" -e "s#@DNS_IP@#$DNS_IP#g" "$f"
    echo "---"
  done | kubectl --kubeconfig="$ADMIN" apply -f - >/dev/null
  # local-path-provisioner runs on the host (its helper pods create the volume folders).
  start local-path-provisioner local-path-provisioner --debug start \
    --kubeconfig="$ST/kubeconfig/admin.kubeconfig" --namespace=local-path-storage \
    --helper-image=etcd-operator.local/busybox:1.37 --configmap-name=local-path-config \
    --service-account-name=local-path-provisioner
  wait_for "node Ready" 120 kubectl --kubeconfig="$ADMIN" wait --for=condition=Ready "node/$NODE" --timeout=1s
  kubectl --kubeconfig="$ADMIN" -n kube-system rollout status deploy/coredns --timeout=120s >/dev/null ||
    die "CoreDNS did not become ready"
}

up() {
  [ "$(id -u)" = 0 ] || die "the node needs root (kubelet, containerd, iptables, mounts)"
  load_env
  if running kubelet; then die "the node is already up (hack/node.sh down first)"; fi
  if [ -d "$ST" ]; then log "leftovers of an earlier node found: cleaning up first"; down; fi
  local t0=$SECONDS
  mkdir -p "$ST" "$LOGS"
  : >"$LOGS/up.log"
  record_host
  network_up
  make_pki
  control_plane_up_etcd
  apiserver_up
  containerd_up
  load_images
  kubelet_up
  proxy_up
  addons_up
  cp "$ADMIN" "$KUBECONFIG_OUT"
  log "node up in $((SECONDS - t0))s: export KUBECONFIG=$KUBECONFIG_OUT"
}
control_plane_up_etcd() {
  start etcd "$ETCD_DIR/etcd" --name=control-plane --data-dir="$ST/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="control-plane=http://127.0.0.1:$ETCD_PEER_PORT" \
    --listen-metrics-urls= --log-level=warn --unsafe-no-fsync
  wait_for etcd 30 "$ETCD_DIR/etcdctl" --endpoints="127.0.0.1:$ETCD_CLIENT_PORT" endpoint health
}

# --- down -----------------------------------------------------------------------------------
down() {
  load_env
  # Agents first, so nothing recreates pods while they go.
  stop local-path-provisioner 5
  stop kube-proxy 5
  stop kubelet 15
  if [ -S "$SOCK" ] && running containerd; then
    # Through CRI, so that CNI DEL runs for each sandbox (veth, address, network namespace).
    local pods
    pods=$("${CRICTL[@]}" pods -q 2>/dev/null || true)
    if [ -n "$pods" ]; then
      # shellcheck disable=SC2086
      "${CRICTL[@]}" stopp $pods >/dev/null 2>&1 || true
      # shellcheck disable=SC2086
      "${CRICTL[@]}" rmp -f $pods >/dev/null 2>&1 || true
    fi
  fi
  # Shims left (containerd records their PIDs under our state folder).
  local f p
  while read -r f; do
    p=$(cat "$f" 2>/dev/null || true)
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then kill -9 "$p" 2>/dev/null || true; fi
  done < <(find "$ST/containerd/state" -name shim.pid 2>/dev/null)
  stop containerd 10
  stop kube-scheduler 5
  stop kube-controller-manager 5
  stop kube-apiserver 10
  stop etcd 10
  # Mounts under the state folder (kubelet's volumes, overlay snapshots, shm), deepest first.
  local m i
  for i in 1 2 3; do
    while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done < <(findmnt -rn -o TARGET | grep "^$ST/" | sort -r)
  done
  # Network namespaces CNI left (only when the sandbox removal above failed).
  if [ -d /run/netns ]; then
    for m in /run/netns/cni-*; do
      [ -e "$m" ] || continue
      umount "$m" 2>/dev/null || true
      rm -f "$m"
    done
  fi
  iptables_down
  ip link del "$BRIDGE" 2>/dev/null || true
  ip link del "$NODE_IF" 2>/dev/null || true
  # Veths of pods whose CNI DEL never ran.
  while read -r m; do ip link del "$m" 2>/dev/null || true; done < <(
    ip -o link show type veth 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^veth' || true)
  if [ -f "$CLUSTER/sysctl.orig" ]; then
    local k v
    while IFS== read -r k v; do sysctl -qw "$k=$v" 2>/dev/null || true; done <"$CLUSTER/sysctl.orig"
    rm -f "$CLUSTER/sysctl.orig"
  fi
  cgroups_down
  host_dirs_down
  if grep -q "^$ST" <<<"$(findmnt -rn -o TARGET)"; then
    log "warning: mounts left under $ST: $(findmnt -rn -o TARGET | grep "^$ST" | tr '\n' ' ')"
  else
    rm -rf --one-file-system "$ST"
  fi
  rm -f "$KUBECONFIG_OUT"
  log "node down (logs kept in $LOGS)"
}

iptables_down() {
  if grep -q -- "-j $GUARD" <<<"$(iptables -S FORWARD 2>/dev/null)"; then iptables -D FORWARD -j "$GUARD"; fi
  iptables -F "$GUARD" 2>/dev/null || true
  iptables -X "$GUARD" 2>/dev/null || true
  "$KBIN/kube-proxy" --cleanup >>"$LOGS/kube-proxy-cleanup.log" 2>&1 || true
  # kubelet's own chains, which `kube-proxy --cleanup` leaves: KUBE-FIREWALL (drops traffic to
  # 127.0.0.0/8 from other sources), the canaries, the mode hint.
  local ipt c t
  for ipt in iptables ip6tables; do
    for c in INPUT OUTPUT; do
      while "$ipt" -D "$c" -j KUBE-FIREWALL 2>/dev/null; do :; done
    done
    "$ipt" -F KUBE-FIREWALL 2>/dev/null || true
    "$ipt" -X KUBE-FIREWALL 2>/dev/null || true
    for t in filter nat mangle; do
      "$ipt" -t "$t" -F KUBE-KUBELET-CANARY 2>/dev/null || true
      "$ipt" -t "$t" -X KUBE-KUBELET-CANARY 2>/dev/null || true
    done
    "$ipt" -t mangle -F KUBE-IPTABLES-HINT 2>/dev/null || true
    "$ipt" -t mangle -X KUBE-IPTABLES-HINT 2>/dev/null || true
  done
  # The nf_tables tables the iptables front end created (empty now) go too.
  if [ -f "$CLUSTER/nft.orig" ]; then
    local table
    while read -r table; do
      if ! grep -qxF "$table" "$CLUSTER/nft.orig"; then
        # shellcheck disable=SC2086
        nft delete $table 2>/dev/null || true
      fi
    done < <(nft list tables 2>/dev/null)
    rm -f "$CLUSTER/nft.orig"
  fi
}

# kubelet's cgroups (cgroupfs driver): whatever still runs in them is killed, then the folders
# go, deepest first.
cgroups_down() {
  local top pid dir
  for top in /sys/fs/cgroup/*/kubepods; do
    [ -d "$top" ] || continue
    grep -qxF "$top absent" "$CLUSTER/dirs.orig" 2>/dev/null || continue
    while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done < <(find "$top" -name cgroup.procs -exec cat {} + 2>/dev/null)
    sleep 0.2
    while read -r dir; do rmdir "$dir" 2>/dev/null || true; done < <(find "$top" -depth -type d)
    [ -d "$top" ] && log "warning: could not remove $top"
  done
  return 0
}

host_dirs_down() {
  [ -f "$CLUSTER/dirs.orig" ] || return 0
  local d state
  while read -r d state; do
    case $d in
      /var/log/containers) find /var/log/containers -maxdepth 1 -lname "$ST/*" -delete 2>/dev/null || true ;;
    esac
    case $d in /sys/fs/cgroup/*) continue ;; esac
    if [ "$state" = absent ] && [ -e "$d" ]; then
      if [ "$d" = /run/netns ] && findmnt -rn "$d" >/dev/null; then umount "$d" 2>/dev/null || true; fi
      rm -rf --one-file-system "$d" || log "warning: could not remove $d"
    fi
  done <"$CLUSTER/dirs.orig"
  rm -f "$CLUSTER/dirs.orig"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  images) load_env; operator_image ;;
  *) echo "usage: hack/node.sh up|down|images" >&2; exit 2 ;;
esac
