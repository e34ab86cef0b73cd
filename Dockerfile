# syntax=docker/dockerfile:1
#
# Container images of Sluice's three binaries, built from one compilation:
#
#   docker build --target sluice-operator -t REGISTRY/sluice-operator:0.1.0 .
#   docker build --target sluice-api      -t REGISTRY/sluice-api:0.1.0 .
#   docker build --target sluice-worker   -t REGISTRY/sluice-worker:0.1.0 .
#
# The final images are distroless (glibc, CA certificates, no shell) and run as the non-root
# user 65532, as the chart's restricted security context requires. The API image also runs the
# chart's migration Job (`sluice-api migrate`; the migrations are compiled in).

# The toolchain of rust-toolchain.toml.
ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p sluice-operator -p sluice-api -p sluice-worker \
        --bin sluice-operator --bin sluice-api --bin sluice-worker \
 && mkdir -p /out \
 && cp target/release/sluice-operator target/release/sluice-api target/release/sluice-worker /out/

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.source="https://sluice.dev" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532

FROM runtime AS sluice-operator
COPY --from=builder /out/sluice-operator /usr/local/bin/sluice-operator
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sluice-operator"]
CMD ["run"]

FROM runtime AS sluice-api
COPY --from=builder /out/sluice-api /usr/local/bin/sluice-api
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sluice-api"]
CMD ["serve"]

# The last stage is the default target: the worker, whose image the operator puts in every
# route's pods (they pass only `--config ...` as arguments).
FROM runtime AS sluice-worker
COPY --from=builder /out/sluice-worker /usr/local/bin/sluice-worker
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/sluice-worker"]
