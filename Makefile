# etcd-operator: the two entry points are `make demo` and `make test` (see README.md).
# Every target provisions what it needs through hack/provision.sh (cached by version).

SHELL := /bin/bash
TESTBIN ?= $(HOME)/.cache/etcd-operator/testbin

.PHONY: all build test demo demo-tls provision provision-etcd provision-node lint fmt clippy bench-client help static crds \
	cluster-up cluster-down bench-node

all: build

help:
	@echo "make demo       run the operator on a local 3-member etcd cluster"
	@echo "make test       provision etcd, kube-apiserver, kubectl, helm and run every test"
	@echo "make lint       rustfmt --check and clippy -D warnings"
	@echo "make provision  fetch/build the test binaries only"
	@echo "make static     the static release binary the Dockerfile ships (checked with hack/check-static.sh)"
	@echo "make crds       regenerate crds/, the chart's and config/'s CRD copies (hack/sync-crds.sh)"
	@echo "make cluster-up    start a real single-node Kubernetes (root), every image loaded;"
	@echo "                   KUBECONFIG=~/.cache/etcd-operator/cluster/kubeconfig"
	@echo "make cluster-down  stop it and restore the host"
	@echo "make bench-node    in-cluster timings (bootstrap of 3 members, scale 3 -> 5) on a fresh node"

build:
	cargo build --release

provision:
	hack/provision.sh all

provision-etcd:
	hack/provision.sh etcd

provision-node:
	hack/provision.sh node

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

fmt:
	cargo fmt --all

test: provision
	hack/test.sh

demo: provision-etcd
	hack/demo.sh

# The same with client and peer TLS and etcd auth (examples/local/tls.yaml).
demo-tls: provision-etcd
	MANIFEST=examples/local/tls.yaml CLUSTER=secure hack/demo.sh

bench-client: provision-etcd
	hack/bench.sh

.PHONY: bench-operator
bench-operator: provision-etcd
	hack/bench-operator.sh

# The static binary of the container image (the Dockerfile runs this same target). glibc with
# crt-static on the host target: no musl target is needed. Build scripts and proc macros stay
# dynamic (RUSTFLAGS with --target only applies to the target crates).
STATIC_TARGET ?= x86_64-unknown-linux-gnu
STATIC_BIN := target/$(STATIC_TARGET)/release/etcd-operator

static:
	RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_STRIP=symbols \
		cargo build --release --locked --target $(STATIC_TARGET) --bin etcd-operator
	hack/check-static.sh $(STATIC_BIN)

crds:
	hack/sync-crds.sh

# A real single-node Kubernetes (hack/node.sh): the operator image is written from `make static`.
cluster-up: provision-node static
	hack/node.sh up

cluster-down:
	hack/node.sh down

bench-node: provision-node static
	hack/bench-node.sh
