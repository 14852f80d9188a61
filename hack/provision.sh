#!/usr/bin/env bash
# Provisions every binary the tests, the demo and the benchmarks need, cached by version under
# ~/.cache/etcd-operator/testbin/<tool>-<version>/ (override with ETCD_OPERATOR_TESTBIN).
#
#   etcd, etcdctl, etcdutl 3.5.16   Debian trixie packages (etcd-server, etcd-client)
#   etcd, etcdctl, etcdutl 3.4.23   Debian bookworm packages (the older version for upgrade tests)
#   etcd, etcdctl, etcdutl 3.5.35, 3.6.16, 3.7.3
#                                   static builds (CGO_ENABLED=0) from the go.etcd.io/etcd Go modules
#                                   (pins: hack/tools/etcd-<version>): usable in a scratch image
#   kube-apiserver, kubectl 1.34.x  built from the k8s.io/kubernetes Go module (pin: hack/tools/k8s)
#   helm v3                         built from the helm.sh/helm/v3 Go module (pin: hack/tools/helm)
#
# Debian packages are fetched with a private apt state under the cache (its own source list and
# package lists) and unpacked with `dpkg -x`: nothing is installed into, or upgraded on, the system.
#
# Usage: hack/provision.sh [etcd|kube|helm|bench|all]...   (default: all; `bench` is not in `all`)
# Prints nothing but progress to stderr; writes $TESTBIN/env.mk and $TESTBIN/env.sh with the paths.
# Idempotent: a tool whose folder holds a `.done` stamp is not fetched or built again.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TESTBIN=${ETCD_OPERATOR_TESTBIN:-$HOME/.cache/etcd-operator/testbin}
ETCD_NEW=3.5.16
ETCD_NEW_DEB=3.5.16-4
ETCD_OLD=3.4.23
# Static builds of the supported lines' current patches (what images and upgrade tests use).
ETCD_STATIC=(3.5.35 3.6.16 3.7.3)
KUBE_VERSION=1.34.10
HELM_VERSION=3.21.4

log() { printf 'provision: %s\n' "$*" >&2; }
die() { printf 'provision: error: %s\n' "$*" >&2; exit 1; }
# prints <pattern> <command...>: true when the command's whole output matches. The output is read
# to the end before grep looks at it: `cmd | grep -q` under pipefail fails at random when grep
# exits on the first match and the command dies of SIGPIPE writing its next line.
prints() {
  local pattern=$1 out; shift
  out=$("$@" 2>&1) || return 1
  grep -q -- "$pattern" <<<"$out"
}

mkdir -p "$TESTBIN"

# --- Debian packages through a private apt state ----------------------------------------------
APT_DIR=$TESTBIN/apt
apt_opts() {
  printf '%s\n' \
    -o "Dir::Etc::SourceList=$APT_DIR/sources.list" \
    -o "Dir::Etc::SourceParts=$APT_DIR/sources.list.d" \
    -o "Dir::State::Lists=$APT_DIR/lists" \
    -o "Dir::Cache=$APT_DIR/cache" \
    -o "Dir::Etc::Preferences=$APT_DIR/preferences" \
    -o "Dir::Etc::PreferencesParts=$APT_DIR/preferences.d" \
    -o "Debug::NoLocking=1" \
    -o "APT::Sandbox::User=root"
}
apt_ready=0
apt_prepare() {
  [ "$apt_ready" = 1 ] && return 0
  command -v apt-get >/dev/null || die "apt-get not found: this script needs a Debian machine"
  mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/sources.list.d" \
    "$APT_DIR/preferences.d"
  : > "$APT_DIR/preferences"
  cat > "$APT_DIR/sources.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
EOF
  local opts; mapfile -t opts < <(apt_opts)
  log "apt-get update (private lists under $APT_DIR)"
  apt-get "${opts[@]}" -qq update >&2 || die "apt-get update failed (is deb.debian.org reachable?)"
  apt_ready=1
}
# fetch_deb <dest-dir> <package> <version-glob>
fetch_deb() {
  local dest=$1 pkg=$2 ver=$3 opts exact
  mapfile -t opts < <(apt_opts)
  exact=$(apt-cache "${opts[@]}" madison "$pkg" | awk -v v="$ver" '$3 ~ "^"v {print $3; exit}')
  [ -n "$exact" ] || die "Debian package $pkg $ver not found in trixie/bookworm lists"
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && apt-get "${opts[@]}" -qq download "$pkg=$exact" >&2) ||
    die "apt-get download $pkg=$exact failed"
  dpkg -x "$tmp"/*.deb "$dest"
  rm -rf "$tmp"
}
# provision_etcd <version> <debian-version-prefix>
provision_etcd() {
  local v=$1 deb=$2 dir=$TESTBIN/etcd-$1
  [ -f "$dir/.done" ] && return 0
  apt_prepare
  log "etcd $v from Debian ($deb)"
  rm -rf "$dir" "$dir.x"; mkdir -p "$dir.x" "$dir/bin"
  fetch_deb "$dir.x" etcd-server "$deb"
  fetch_deb "$dir.x" etcd-client "$deb"
  for b in etcd etcdctl etcdutl; do
    if [ -x "$dir.x/usr/bin/$b" ]; then cp "$dir.x/usr/bin/$b" "$dir/bin/$b"; fi
  done
  rm -rf "$dir.x"
  [ -x "$dir/bin/etcd" ] && [ -x "$dir/bin/etcdctl" ] || die "etcd $v: package lacks etcd/etcdctl"
  prints "etcd Version: $v" "$dir/bin/etcd" --version || die "etcd $v: wrong version: $("$dir/bin/etcd" --version | head -1)"
  touch "$dir/.done"
}

# --- Go-built tools -------------------------------------------------------------------------
go_env() {
  command -v go >/dev/null || die "go not found: Go 1.26 is needed to build kube-apiserver and helm"
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
}
# The version flags every Kubernetes binary of the pin is built with.
kube_ldflags() {
  local minor ldf="-s -w" p
  minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf="$ldf -X $p.gitVersion=v$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldf="$ldf -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$ldf"
}
provision_kube() {
  local dir=$TESTBIN/kube-$KUBE_VERSION
  [ -f "$dir/.done" ] && return 0
  go_env
  log "kube-apiserver + kubectl v$KUBE_VERSION from the k8s.io/kubernetes Go module (cold: ~15-25 min)"
  mkdir -p "$dir/bin"
  (cd "$ROOT/hack/tools/k8s" && go build -trimpath -ldflags "$(kube_ldflags)" -o "$dir/bin/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl) >&2 ||
    die "building kube-apiserver failed"
  prints "v$KUBE_VERSION" "$dir/bin/kube-apiserver" --version || die "kube-apiserver reports the wrong version"
  touch "$dir/.done"
}
provision_helm() {
  local dir=$TESTBIN/helm-$HELM_VERSION
  [ -f "$dir/.done" ] && return 0
  go_env
  log "helm v$HELM_VERSION from the helm.sh/helm/v3 Go module"
  local kminor; kminor=$(echo "$KUBE_VERSION" | cut -d. -f2)
  local ldf="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
  ldf="$ldf -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kminor"
  ldf="$ldf -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kminor"
  mkdir -p "$dir/bin"
  (cd "$ROOT/hack/tools/helm" && go build -trimpath -ldflags "$ldf" -o "$dir/bin/helm" helm.sh/helm/v3/cmd/helm) >&2 ||
    die "building helm failed"
  prints "v$HELM_VERSION" "$dir/bin/helm" version --short || die "helm reports the wrong version"
  touch "$dir/.done"
}

# provision_etcd_static <version>: etcd, etcdctl and etcdutl built static from the Go modules pinned
# in hack/tools/etcd-<version> (Debian's etcd is dynamically linked: no good in a scratch image).
provision_etcd_static() {
  local v=$1 dir=$TESTBIN/etcd-$1 m out
  [ -f "$dir/.done" ] && return 0
  [ -f "$ROOT/hack/tools/etcd-$v/go.mod" ] || die "no pin for etcd $v (hack/tools/etcd-$v/go.mod)"
  go_env
  log "etcd $v (static) from the go.etcd.io/etcd Go modules (cold: ~1-2 min each)"
  rm -rf "$dir"; mkdir -p "$dir/bin"
  for m in server etcdctl etcdutl; do
    out=$m; [ "$m" = server ] && out=etcd
    (cd "$ROOT/hack/tools/etcd-$v" && go build -trimpath \
        -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=v$v" \
        -o "$dir/bin/$out" "go.etcd.io/etcd/$m/v3") >&2 || die "building etcd $v ($m) failed"
  done
  prints "etcd Version: $v" "$dir/bin/etcd" --version || die "etcd $v: wrong version: $("$dir/bin/etcd" --version | head -1)"
  if prints 'Requesting program interpreter' env LC_ALL=C readelf -l "$dir/bin/etcd"; then
    die "etcd $v is not static"
  fi
  touch "$dir/.done"
}
provision_etcd_all() {
  local v
  provision_etcd "$ETCD_NEW" "$ETCD_NEW_DEB"; provision_etcd "$ETCD_OLD" "$ETCD_OLD"
  for v in "${ETCD_STATIC[@]}"; do provision_etcd_static "$v"; done
}

# --- `make bench-client`: protoc for the etcd-client crate peer, etcd's Go benchmark tool -------
PROTOC_DEB=3.21.12-3       # Debian bookworm's protobuf 3.21.12 (runs on bookworm and on trixie)
ETCD_BENCH_VERSION=3.5.16  # go.etcd.io/etcd/v3/tools/benchmark (pin: hack/tools/etcd-bench)
# protoc (+ its two shared libraries and the well-known .proto files) unpacked under the cache:
# the `etcd-client` crate's build script needs a protoc; nothing is installed on the system.
provision_protoc() {
  local dir=$TESTBIN/protoc-$PROTOC_DEB
  [ -f "$dir/.done" ] && return 0
  apt_prepare
  log "protoc from Debian (protobuf $PROTOC_DEB, unpacked under $dir)"
  rm -rf "$dir" "$dir.x"; mkdir -p "$dir.x" "$dir/bin" "$dir/lib" "$dir/include/google/protobuf"
  local p
  for p in protobuf-compiler libprotoc32 libprotobuf32 libprotobuf-dev; do fetch_deb "$dir.x" "$p" "$PROTOC_DEB"; done
  cp "$dir.x/usr/bin/protoc" "$dir/bin/protoc"
  cp -a "$dir.x"/usr/lib/*/libprotoc.so.* "$dir.x"/usr/lib/*/libprotobuf.so.* "$dir/lib/"
  cp "$dir.x"/usr/include/google/protobuf/*.proto "$dir/include/google/protobuf/"
  rm -rf "$dir.x"
  # protoc finds the well-known types in <bindir>/../include by itself.
  prints "libprotoc 3.21" env LD_LIBRARY_PATH="$dir/lib" "$dir/bin/protoc" --version || die "protoc does not run"
  touch "$dir/.done"
}
provision_etcd_bench() {
  local dir=$TESTBIN/etcd-bench-$ETCD_BENCH_VERSION
  [ -f "$dir/.done" ] && return 0
  go_env
  log "etcd benchmark tool v$ETCD_BENCH_VERSION from the go.etcd.io/etcd/v3 Go module"
  mkdir -p "$dir/bin"
  (cd "$ROOT/hack/tools/etcd-bench" && go build -trimpath -ldflags "-s -w" -o "$dir/bin/benchmark" \
      go.etcd.io/etcd/v3/tools/benchmark) >&2 || die "building etcd's benchmark tool failed"
  prints "txn-put" "$dir/bin/benchmark" --help || die "etcd's benchmark tool does not run"
  touch "$dir/.done"
}
# Writes $TESTBIN/bench-env.sh (sourced by hack/bench.sh) with the paths of both.
provision_bench() {
  provision_protoc
  provision_etcd_bench
  cat > "$TESTBIN/bench-env.sh" <<EOF
export PROTOC=$TESTBIN/protoc-$PROTOC_DEB/bin/protoc
export PROTOC_LIB_DIR=$TESTBIN/protoc-$PROTOC_DEB/lib
export ETCD_GO_BENCHMARK=$TESTBIN/etcd-bench-$ETCD_BENCH_VERSION/bin/benchmark
EOF
}

# --- The test node (`make cluster-up`, the in-cluster e2e suite) ------------------------------
# Node agents from the k8s pin, CoreDNS, the volume provisioner, crictl and pause from their Go
# modules (pins in hack/tools/<name>); containerd, runc, the CNI plugins and iptables from
# Debian bookworm (the host's release: they link the host's glibc); the images the node runs,
# written by hack/mkimage.py as docker archives (no registry, no docker daemon).
COREDNS_VERSION=1.12.4
LOCAL_PATH_VERSION=0.0.30   # v0.0.32 is not served by the Go module proxy (403)
CRICTL_VERSION=1.34.0
PAUSE_VERSION=3.10
BUSYBOX_DEB=1:1.37.0-6      # busybox-static (trixie): static, so it runs in any image
# Exact bookworm versions (regular expressions for fetch_deb: `+` written as `[+]`).
NODE_DEBS=(
  "containerd 1.6.20~ds1-1[+]deb12u3"
  "runc 1.1.5[+]ds1-1[+]deb12u1"
  "containernetworking-plugins 1.1.1[+]ds1-3[+]b5"
  "iptables 1.8.9-2"
  "libip4tc2 1.8.9-2"
  "libip6tc2 1.8.9-2"
  "libxtables12 1.8.9-2"
  "libnftnl11 1.2.4-2"
  "libnetfilter-conntrack3 1.0.9-3"
  "libnfnetlink0 1.0.2-2"
  "libmnl0 1.0.4-3"
  "nftables 1.0.6-2[+]deb12u2"
  "libnftables1 1.0.6-2[+]deb12u2"
  "libjansson4 2.14-2$"
)
NODE_RUNTIME=containerd-1.6.20-2   # folder name; bump the suffix when NODE_DEBS changes
IMAGES_REV=1                       # bump when hack/mkimage.py or an image's layout changes

# kubelet, kube-controller-manager, kube-scheduler, kube-proxy: same pin and flags as kube-apiserver.
provision_kube_node() {
  local dir=$TESTBIN/kube-node-$KUBE_VERSION t0=$SECONDS
  [ -f "$dir/.done" ] && return 0
  go_env
  log "kubelet, kube-controller-manager, kube-scheduler, kube-proxy v$KUBE_VERSION (k8s pin)"
  mkdir -p "$dir/bin"
  (cd "$ROOT/hack/tools/k8s" && go build -trimpath -ldflags "$(kube_ldflags)" -o "$dir/bin/" \
      k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy) >&2 ||
    die "building the node's Kubernetes components failed"
  for c in kubelet kube-controller-manager kube-scheduler kube-proxy; do
    prints "v$KUBE_VERSION" "$dir/bin/$c" --version || die "$c reports the wrong version"
  done
  touch "$dir/.done"
  log "node components built in $((SECONDS - t0))s"
}
# provision_go_tool <name> <version> <package> <binary> [ldflags]: one binary from hack/tools/<name>.
provision_go_tool() {
  local name=$1 v=$2 pkg=$3 bin=$4 ldf="-s -w ${5:-}" dir=$TESTBIN/$1-$2 t0=$SECONDS
  [ -f "$dir/.done" ] && return 0
  go_env
  log "$name $v from its Go module (pin: hack/tools/$name)"
  mkdir -p "$dir/bin"
  (cd "$ROOT/hack/tools/$name" && go build -trimpath -ldflags "$ldf" -o "$dir/bin/$bin" "$pkg") >&2 ||
    die "building $name failed"
  touch "$dir/.done"
  log "$name $v built in $((SECONDS - t0))s"
}
provision_node_tools() {
  provision_go_tool pause "$PAUSE_VERSION" . pause
  provision_go_tool coredns "$COREDNS_VERSION" github.com/coredns/coredns coredns \
    "-X github.com/coredns/coredns/coremain.GitCommit=v$COREDNS_VERSION"
  provision_go_tool local-path "$LOCAL_PATH_VERSION" github.com/rancher/local-path-provisioner \
    local-path-provisioner
  provision_go_tool crictl "$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl crictl \
    "-X sigs.k8s.io/cri-tools/pkg/version.Version=v$CRICTL_VERSION"
  prints "$COREDNS_VERSION" "$TESTBIN/coredns-$COREDNS_VERSION/bin/coredns" -version ||
    die "coredns reports the wrong version"
}
# containerd, runc, CNI plugins and iptables unpacked under the cache. bin/ holds what the node
# scripts call: the binaries themselves, and iptables wrappers that find the unpacked libraries.
provision_node_runtime() {
  local dir=$TESTBIN/node-runtime-$NODE_RUNTIME entry b
  [ -f "$dir/.done" ] && return 0
  apt_prepare
  log "containerd, runc, CNI plugins, iptables from Debian bookworm (unpacked under $dir)"
  rm -rf "$dir"; mkdir -p "$dir/root" "$dir/bin"
  for entry in "${NODE_DEBS[@]}"; do
    # shellcheck disable=SC2086
    fetch_deb "$dir/root" $entry
  done
  for b in containerd containerd-shim-runc-v2 ctr runc; do
    ln -s "../root/usr/bin/$b" "$dir/bin/$b"
  done
  ln -s root/usr/lib/cni "$dir/cni"
  local lib=$dir/root/usr/lib/x86_64-linux-gnu
  for b in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s XTABLES_LIBDIR=%s exec %s %s "$@"\n' \
      "$lib" "$lib/xtables" "$dir/root/usr/sbin/xtables-nft-multi" "$b" > "$dir/bin/$b"
    chmod 0755 "$dir/bin/$b"
  done
  # nft: `hack/node.sh down` deletes the nf_tables tables the iptables front end created.
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$lib" "$dir/root/usr/sbin/nft" > "$dir/bin/nft"
  chmod 0755 "$dir/bin/nft"
  prints 1.6.20 "$dir/bin/containerd" --version || die "containerd does not run"
  "$dir/bin/runc" --version >/dev/null || die "runc does not run"
  prints nf_tables "$dir/bin/iptables" --version || die "iptables does not run"
  "$dir/bin/nft" --version >/dev/null || die "nft does not run"
  [ -x "$dir/cni/bridge" ] && [ -x "$dir/cni/host-local" ] || die "CNI plugins missing"
  touch "$dir/.done"
}
# The node's fixed images (the operator's own image is built from `make static` at cluster-up).
provision_images() {
  local dir=$TESTBIN/images-$IMAGES_REV v tmp
  [ -f "$dir/.done" ] && return 0
  for v in "${ETCD_STATIC[@]}"; do provision_etcd_static "$v"; done
  provision_node_tools
  apt_prepare
  log "node images (hack/mkimage.py) into $dir"
  rm -rf "$dir"; mkdir -p "$dir"
  tmp=$(mktemp -d)
  fetch_deb "$tmp" busybox-static "$BUSYBOX_DEB"
  local mk=(python3 "$ROOT/hack/mkimage.py") etcd35=$TESTBIN/etcd-${ETCD_STATIC[0]}/bin
  "${mk[@]}" --out "$dir/pause.tar" --tag "etcd-operator.local/pause:$PAUSE_VERSION" \
    --entrypoint /pause --user 65535:65535 --file "$TESTBIN/pause-$PAUSE_VERSION/bin/pause:/pause" >&2
  "${mk[@]}" --out "$dir/coredns.tar" --tag "etcd-operator.local/coredns:v$COREDNS_VERSION" \
    --base-files --entrypoint /coredns --file "$TESTBIN/coredns-$COREDNS_VERSION/bin/coredns:/coredns" >&2
  # Client pods' image: busybox (sh, nslookup, wget; every applet linked) and a static etcdctl.
  "${mk[@]}" --out "$dir/busybox.tar" --tag "etcd-operator.local/busybox:1.37" --base-files \
    --cmd sh --file "$tmp/usr/bin/busybox:/bin/busybox" --busybox-links /bin/busybox \
    --file "$etcd35/etcdctl:/usr/local/bin/etcdctl" >&2
  # etcd as the operator names it by default (gcr.io/etcd-development/etcd:v<version>): the
  # static binaries in /usr/local/bin, no shell, like the official distroless-based image.
  for v in "${ETCD_STATIC[@]}"; do
    "${mk[@]}" --out "$dir/etcd-$v.tar" --tag "gcr.io/etcd-development/etcd:v$v" --base-files \
      --cmd /usr/local/bin/etcd --dir /var/etcd:0700 --dir /var/lib/etcd:0700 \
      --file "$TESTBIN/etcd-$v/bin/etcd:/usr/local/bin/etcd" \
      --file "$TESTBIN/etcd-$v/bin/etcdctl:/usr/local/bin/etcdctl" \
      --file "$TESTBIN/etcd-$v/bin/etcdutl:/usr/local/bin/etcdutl" >&2
  done
  rm -rf "$tmp"
  touch "$dir/.done"
}
provision_node() {
  provision_kube
  provision_kube_node
  provision_node_tools
  provision_node_runtime
  provision_images
}

write_env() {
  cat > "$TESTBIN/env.sh" <<EOF
export ETCD_OPERATOR_TESTBIN=$TESTBIN
export ETCD_BIN_DIR=$TESTBIN/etcd-$ETCD_NEW/bin
export ETCD_OLD_BIN_DIR=$TESTBIN/etcd-$ETCD_OLD/bin
export ETCD_3_5_BIN_DIR=$TESTBIN/etcd-${ETCD_STATIC[0]}/bin
export ETCD_3_6_BIN_DIR=$TESTBIN/etcd-${ETCD_STATIC[1]}/bin
export ETCD_3_7_BIN_DIR=$TESTBIN/etcd-${ETCD_STATIC[2]}/bin
export ETCD_VERSIONS_DIR=$TESTBIN
export KUBE_APISERVER=$TESTBIN/kube-$KUBE_VERSION/bin/kube-apiserver
export KUBECTL=$TESTBIN/kube-$KUBE_VERSION/bin/kubectl
export HELM=$TESTBIN/helm-$HELM_VERSION/bin/helm
export NODE_KUBE_BIN_DIR=$TESTBIN/kube-node-$KUBE_VERSION/bin
export NODE_RUNTIME_DIR=$TESTBIN/node-runtime-$NODE_RUNTIME
export NODE_IMAGES_DIR=$TESTBIN/images-$IMAGES_REV
export NODE_TOOLS_PATH=$TESTBIN/coredns-$COREDNS_VERSION/bin:$TESTBIN/local-path-$LOCAL_PATH_VERSION/bin:$TESTBIN/crictl-$CRICTL_VERSION/bin
EOF
  sed -e 's/^export //' "$TESTBIN/env.sh" > "$TESTBIN/env.mk"
}

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(all)
for t in "${targets[@]}"; do
  case $t in
    etcd) provision_etcd_all ;;
    kube) provision_kube ;;
    helm) provision_helm ;;
    bench) provision_bench ;;
    node) provision_node ;;
    node-kube) provision_kube_node ;;
    node-tools) provision_node_tools ;;
    node-runtime) provision_node_runtime ;;
    node-images) provision_images ;;
    all) provision_etcd_all; provision_helm; provision_kube; provision_node ;;
    *) die "unknown target '$t' (expected etcd, kube, helm, node, bench or all)" ;;
  esac
done
[[ " ${targets[*]} " == *" all "* ]] && "$ROOT/hack/provision-stores.sh"
write_env
