# etcd-operator: the two entry points are `make demo` and `make test` (see README.md).
# Every target provisions what it needs through hack/provision.sh (cached by version).

SHELL := /bin/bash
TESTBIN ?= $(HOME)/.cache/etcd-operator/testbin

.PHONY: all build test demo provision provision-etcd lint fmt clippy bench-client help

all: build

help:
	@echo "make demo       run the operator on a local 3-member etcd cluster"
	@echo "make test       provision etcd, kube-apiserver, kubectl, helm and run every test"
	@echo "make lint       rustfmt --check and clippy -D warnings"
	@echo "make provision  fetch/build the test binaries only"

build:
	cargo build --release

provision:
	hack/provision.sh all

provision-etcd:
	hack/provision.sh etcd

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

fmt:
	cargo fmt --all

test: provision
	hack/test.sh

demo: provision-etcd
	hack/demo.sh

bench-client: provision-etcd
	hack/bench.sh
