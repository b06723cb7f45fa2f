# The tenure command in a small, non-root image:
#
#   docker build -t tenure .
#   docker run --rm tenure --help
#
# To lead with your own program, copy the binary into your image (see
# deploy/example.Dockerfile):
#
#   COPY --from=tenure /usr/local/bin/tenure /usr/local/bin/tenure
#
# Two stages: Rust builds the binary (protoc is for the etcd client), and
# the final image is distroless "cc": glibc, libgcc, CA certificates and
# the user nonroot (65532), no shell, no package manager.
ARG RUST_IMAGE=rust:1.89-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tenure-cli \
 && strip target/release/tenure \
 && install -D target/release/tenure /out/tenure

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/tenure /usr/local/bin/tenure
USER 65532:65532
# --http's conventional port (deploy/example.yaml).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tenure"]
