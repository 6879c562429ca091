# syntax=docker/dockerfile:1
#
# quorumgate agent image: a release build on Debian 12, run from distroless (glibc, CA roots,
# no shell) as the numeric non-root user 65532, on a read-only root filesystem.
#
#   docker build -t quorumgate .
#   docker run --read-only --cap-drop ALL --security-opt no-new-privileges \
#     -v "$PWD/quorumgate.toml:/etc/quorumgate/quorumgate.toml:ro" \
#     -v "$PWD/keys:/run/quorumgate/keys:ro" -v "$PWD/tls:/run/quorumgate/tls:ro" \
#     -v quorumgate-state:/var/lib/quorumgate \
#     -e QUORUMGATE_LOCAL__AGENT_ID=use1 -p 9443:9443 -p 8443:8443 quorumgate
#   (keys/agent.key owned by uid 65532 with mode 0600 or 0400: the agent refuses a key that
#   others can read; `docker run … quorumgate keygen --out /out/agent.key` makes one.)
#
# Layout (tests/integration/container.rs starts the binary with exactly this layout, these
# arguments and this environment):
#   /etc/quorumgate/quorumgate.toml   config, read-only (Kubernetes: a ConfigMap)
#   /run/quorumgate/keys/agent.key    the agent's signing key, read-only, mode 0400 or 0600,
#                                     readable by uid 65532 (Kubernetes: see deploy/kubernetes)
#   /run/quorumgate/tls/              TLS certificates and keys, read-only (paths in [local.tls])
#   /var/lib/quorumgate               state_dir: the audit log; the only path the agent writes
# The environment below fixes state_dir and key_file; it overrides the config file's [local].
# Logs go to stderr as JSON lines.

# The runtime base is an argument, so the image builds where no registry is reachable: the
# podman tests (tests/integration/podman) pass a root made locally with mmdebstrap that holds
# what distroless cc-debian12 holds (glibc, libgcc, CA roots, tzdata, passwd with uid 65532).
# They also build `--target prebuilt`, which takes an already built binary from the build
# context instead of compiling one in the rust image (also not pullable there):
#
#   podman build -f Dockerfile --target prebuilt --build-arg BASE=localhost/base:tag \
#     --pull=never -t quorumgate CONTEXT     # CONTEXT holds quorumgate and var-lib/quorumgate/
#
# The default target (the last stage, `runtime`) builds the release binary from source.
ARG BASE=gcr.io/distroless/cc-debian12:nonroot
ARG RUST_VERSION=1.95

# What every variant of the image shares: user, environment, volume, ports, command.
FROM ${BASE} AS base
LABEL org.opencontainers.image.title="quorumgate" \
      org.opencontainers.image.description="Route 53 health-check quorum agent and failover gate" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/quorumgate"
USER 65532:65532
ENV QUORUMGATE_LOCAL__STATE_DIR=/var/lib/quorumgate \
    QUORUMGATE_LOCAL__KEY_FILE=/run/quorumgate/keys/agent.key \
    QUORUMGATE_LOCAL__LOG_FORMAT=json
VOLUME ["/var/lib/quorumgate"]
# 9443: local.listen (peers' ballots, operator commands, status, metrics; mutual TLS)
# 8443: local.health_listen (Route 53 health checkers, /livez, /readyz)
EXPOSE 9443 8443
WORKDIR /
ENTRYPOINT ["/usr/local/bin/quorumgate"]
CMD ["agent", "--config", "/etc/quorumgate/quorumgate.toml"]

# A binary built outside (the tests use the one their cargo build made). Before the build
# stage, so that building this target never needs the rust image.
FROM base AS prebuilt
COPY quorumgate /usr/local/bin/quorumgate
COPY --chown=65532:65532 var-lib/ /var/lib/

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the registry and the target directory between builds (BuildKit); the
# binary is copied out of the cached target directory in the same step. Without default
# features: the `emulator` feature (the demo's Route 53 emulator) is a test fixture. The release profile
# keeps line tables for backtraces: compressed (zlib, which backtraces read) they take the
# image from ~151 MB to ~79 MB (measured with the prebuilt target).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features -p quorumgate --bin quorumgate \
 && install -D -m 0755 target/release/quorumgate /out/quorumgate \
 && objcopy --compress-debug-sections=zlib /out/quorumgate \
 && install -d -m 0700 /out/var-lib/quorumgate

FROM base AS runtime
COPY --from=build /out/quorumgate /usr/local/bin/quorumgate
# The state directory as an entry of the copied tree, so it keeps mode 0700 and gets the owner
# (a volume created from the image starts with both).
COPY --from=build --chown=65532:65532 /out/var-lib/ /var/lib/
