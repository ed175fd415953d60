# syntax=docker/dockerfile:1
# smartlink in a container: docs/operations.md, "Running in production".
#   docker build -t smartlink .
#   docker run -d -p 8080:8080 -v smartlink-data:/data smartlink

# ---- build ------------------------------------------------------------------
FROM rust:1-bookworm AS build

# The image has gcc, g++, make and git (build.rs asks git for the revision
# `smartlink --version` shows). clang compiles DuckDB's bundled C++ sources
# about 1.5x faster than g++ (docs/analytics-engine.md, "Build time").
# Versions are not pinned (DL3008): Debian drops superseded versions from
# its mirrors, so a pin would break the build at the next point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends clang \
    && rm -rf /var/lib/apt/lists/*

# .cargo/config.toml points CXX at .cargo/cxx, which picks clang++ when
# present; saying so here does not depend on the wrapper.
ENV CXX=clang++ CARGO_TERM_COLOR=never

WORKDIR /src
# The whole context, .git included: build.rs runs `git rev-parse HEAD` and
# reads no environment variable, so without .git (or from a git worktree,
# whose .git is a file pointing outside the context) the version says
# `unknown`.
COPY . .

# The registry and target directory are BuildKit caches, so a rebuild after
# a source change does not recompile DuckDB; the binary is copied out of the
# cache because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin smartlink \
    && install -m 0755 target/release/smartlink /usr/local/bin/smartlink \
    && smartlink --version

# ---- run --------------------------------------------------------------------
FROM debian:bookworm-slim

# The binary links glibc and libstdc++ (DuckDB is C++), both in the base
# image. Outbound postbacks verify TLS with roots compiled into the binary;
# ca-certificates is for anything else that reads the system store.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed uid, so that a bind-mounted data directory can be chowned to it
# on the host: chown 10001:10001 ./data.
RUN groupadd --system --gid 10001 smartlink \
    && useradd --system --uid 10001 --gid smartlink --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin smartlink \
    && install -d -m 0700 -o smartlink -g smartlink /data

COPY --from=build /usr/local/bin/smartlink /usr/local/bin/smartlink

# The flag beats this, this beats a config file's server.data_dir; the CLI
# subcommands read it too (docker exec ... smartlink report).
ENV SMARTLINK_DATA_DIR=/data
VOLUME /data
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
EXPOSE 8080

# No curl in the image: bash's /dev/tcp asks GET /healthz (liveness) and
# checks the status line. It probes port 8080: change it with --listen, or
# run with --no-healthcheck. The start period covers start-up, when the
# router is rebuilt from the stored clicks before the port is bound.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

ENTRYPOINT ["smartlink"]
# A config file is optional (definitions can come through the admin API);
# to use one, mount it and repeat --listen, since arguments replace CMD:
#   docker run ... smartlink serve --listen 0.0.0.0:8080 --config /etc/smartlink/smartlink.yaml
CMD ["serve", "--listen", "0.0.0.0:8080"]
