# syntax=docker/dockerfile:1
# The etcd-operator image: one static binary on distroless "static", running as UID 65532.
#
#   docker build -t etcd-operator:dev --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
#
# The builder runs `make static`, the same target CI and developers run outside Docker, so the
# binary shipped here is the one hack/check-static.sh verified.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# Dependencies first, so that source edits do not rebuild them (cache mounts keep the registry and
# the target folder between builds).
COPY Cargo.toml Cargo.lock Makefile ./
COPY crates crates
COPY proto proto
COPY hack hack
COPY src src
COPY benches benches
COPY tests tests
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    make static \
 && install -D -m 0755 target/x86_64-unknown-linux-gnu/release/etcd-operator /out/etcd-operator

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="etcd-operator" \
      org.opencontainers.image.description="A Kubernetes operator for etcd" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/etcd-operator/etcd-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=builder --chown=0:0 /out/etcd-operator /usr/local/bin/etcd-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/etcd-operator"]
CMD ["run"]
