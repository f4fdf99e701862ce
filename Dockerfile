# syntax=docker/dockerfile:1
#
# gke-iam-remediator container image.
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/gke-iam-remediator:VERSION .
#
# The release binary is built with `cargo build --release --locked --no-default-features`: the product
# without the simulator (`sim`, `demo`: the `simulator` feature, on by default for the command line),
# which has no place in production. CI checks that configuration too (clippy with
# --no-default-features in .ci/run); no other flags, features or RUSTFLAGS. No Docker engine runs in
# CI: keep this the only build step.
#
# Stages: chef (toolchain + cargo-chef) -> planner (dependency recipe) -> builder (cached dependency layer,
# then the crate) -> runtime (distroless, non-root: no shell, no package manager). Every build stage uses
# the same Rust toolchain on Debian 12 (bookworm), matching the runtime's glibc.

ARG RUST_VERSION=1.95.0
ARG CARGO_CHEF_VERSION=0.1.78

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS chef
ARG CARGO_CHEF_VERSION
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /build

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /build/recipe.json recipe.json
# Dependencies only: this layer is reused until Cargo.toml / Cargo.lock change.
RUN cargo chef cook --release --locked --no-default-features --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --no-default-features \
 && cp target/release/gke-iam-remediator /gke-iam-remediator

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
#checkov:skip=CKV_DOCKER_2:No HEALTHCHECK: the distroless image has no shell or curl to run one, and Cloud Run ignores Docker HEALTHCHECK; the Terraform module sets startup and liveness probes on GET /healthz.
COPY --from=builder /gke-iam-remediator /gke-iam-remediator
USER nonroot
# `serve` listens on 0.0.0.0:$PORT (Cloud Run sets PORT; 8080 without it).
ENV PORT=8080
EXPOSE 8080
ENTRYPOINT ["/gke-iam-remediator"]
CMD ["serve"]
