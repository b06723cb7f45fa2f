# deploy/example.yaml's image: a program (here a shell loop) with tenure
# copied in, run by `tenure run`. Build the tenure image first:
#
#   docker build -t tenure .
#   docker build -f deploy/example.Dockerfile -t tenure-example .
ARG TENURE_IMAGE=tenure
ARG APP_IMAGE=debian:bookworm-slim

FROM ${TENURE_IMAGE} AS tenure

FROM ${APP_IMAGE}
COPY --from=tenure /usr/local/bin/tenure /usr/local/bin/tenure
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tenure"]
