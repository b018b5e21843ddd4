# Build and run call-center-agents on Debian 12 (the packages the scripts use).
FROM debian:bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        gcc libc6-dev pkg-config meson ninja-build libmicrohttpd-dev libjansson-dev \
        uuid-dev libcurl4-openssl-dev libutf8proc-dev libstemmer-dev \
    && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN meson setup /build /src --buildtype=release && ninja -C /build

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
        libmicrohttpd12 libjansson4 libuuid1 libcurl4 libutf8proc2 libstemmer0d \
        ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /app cca && mkdir -p /app/storage/dialogs \
    && chown -R cca /app/storage
COPY --from=build /build/call-center-agents /usr/local/bin/call-center-agents
COPY data /app/data
WORKDIR /app
USER cca
ENV HOST=0.0.0.0 PORT=8000 DATA_DIR=/app/data DIALOGS_STORAGE_PATH=/app/storage/dialogs
EXPOSE 8000
VOLUME /app/storage
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/api/v1/health/ready || exit 1
STOPSIGNAL SIGTERM
CMD ["call-center-agents", "serve"]
