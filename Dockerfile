# Build and run call-center-agents on Debian 12 (the packages the scripts use).
# python3 (meson's own dependency) runs tools/embed-web, which compiles web/ in.
# The build context is an allow-list (.dockerignore): no .env, storage/ or build
# directories reach it (tests/docker/check-context.sh).
FROM debian:bookworm-slim AS build
# libcmocka-dev: tests/meson.build needs it to configure; only the server is built.
RUN apt-get update && apt-get install -y --no-install-recommends \
        gcc libc6-dev pkg-config meson ninja-build libmicrohttpd-dev libjansson-dev \
        uuid-dev libcurl4-openssl-dev libutf8proc-dev libstemmer-dev libcmocka-dev libssl-dev libcsv-dev zlib1g-dev \
        libpq-dev \
    && rm -rf /var/lib/apt/lists/*
COPY . /src
# Same options as tests/docker/check_context.py (MESON_OPTIONS).
RUN meson setup /build /src --buildtype=release -Dslow_tests=false \
    && ninja -C /build call-center-agents

FROM debian:bookworm-slim
# A fixed uid/gid (10001) so a bind-mounted storage directory can be given to it:
# chown -R 10001:10001 ./storage (README, "Docker").
RUN apt-get update && apt-get install -y --no-install-recommends \
        libmicrohttpd12 libjansson4 libuuid1 libcurl4 libutf8proc2 libstemmer0d libssl3 libcsv3 libpq5 \
        ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 cca \
    && useradd --uid 10001 --gid cca --no-log-init --no-create-home --home-dir /app \
        --shell /usr/sbin/nologin cca \
    && mkdir -p /app/storage/dialogs \
    && chown -R cca:cca /app/storage
COPY --from=build /build/call-center-agents /usr/local/bin/call-center-agents
COPY data /app/data
WORKDIR /app
# Numeric, so runtimes that require a non-root user (runAsNonRoot) can verify it.
USER 10001:10001
ENV HOST=0.0.0.0 PORT=8000 DATA_DIR=/app/data DIALOGS_STORAGE_PATH=/app/storage/dialogs
EXPOSE 8000
VOLUME /app/storage
# Follows PORT at run time (docker run -e PORT=9000 ...): sh expands it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
    CMD ["sh", "-c", "curl -fsS -o /dev/null \"http://127.0.0.1:${PORT:-8000}/api/v1/health/ready\" || exit 1"]
STOPSIGNAL SIGTERM
CMD ["call-center-agents", "serve"]
