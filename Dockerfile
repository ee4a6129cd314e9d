# The `standby` replicator as a container image.
#
#   docker build -t standby .
#   docker run --rm -v /etc/standby:/etc/standby:ro -v standby-state:/var/lib/standby standby
#
# The configuration is read from /etc/standby/standby.toml (see config/standby.toml and
# docs/configuration.md); the checkpoint lives under /var/lib/standby, a volume that must outlive
# the container. docs/operations.md describes running it.

# --- build -----------------------------------------------------------------------------------------
FROM rust:1-slim-bookworm AS build
WORKDIR /src
# The whole workspace (the binary embeds the dev node for `standby demo`); .dockerignore keeps
# target/ and .git out of the build context.
COPY . .
RUN cargo build --release --locked --bin standby \
    && install -m 0755 target/release/standby /usr/local/bin/standby

# --- run -------------------------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: the system roots, trusted in addition to a configured ca_file.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 standby \
    && useradd --system --uid 10001 --gid standby --home-dir /var/lib/standby --shell /usr/sbin/nologin standby \
    && install -d -o standby -g standby -m 0750 /var/lib/standby \
    && install -d -m 0755 /etc/standby
COPY --from=build /usr/local/bin/standby /usr/local/bin/standby
USER standby:standby
WORKDIR /var/lib/standby
VOLUME ["/var/lib/standby"]
# `run` stops cleanly on SIGTERM (the page in flight is finished and the checkpoint flushed within
# 10 s); give `docker stop` at least that long (its default is 10 s: use --time 30 or
# stop_grace_period in compose).
STOPSIGNAL SIGTERM
ENTRYPOINT ["standby"]
CMD ["run", "--config", "/etc/standby/standby.toml"]
