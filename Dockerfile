# syntax=docker/dockerfile:1
# The cloudvol operator image:
#   docker build -t <registry>/cloudvol:<tag> . && docker push <registry>/cloudvol:<tag>
# A Rust build stage, then the binary alone on distroless (glibc, CA certificates, no shell),
# running as the non-root user 65532.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_PROFILE_RELEASE_STRIP=symbols

# 1. Dependencies only, cached until a manifest or Cargo.lock changes: the workspace's
#    manifests (members `.` and `emulator`) with empty sources in place of the real ones.
COPY Cargo.toml Cargo.lock ./
COPY emulator/Cargo.toml emulator/Cargo.toml
RUN mkdir -p src emulator/src \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && echo 'fn main() {}' > emulator/src/main.rs && touch emulator/src/lib.rs \
 && cargo build --release --locked --bin cloudvol \
 && rm -rf src emulator/src

# 2. The operator itself. touch: the copied sources may be older than step 1's stand-ins,
#    and cargo rebuilds by modification time.
COPY src src
COPY emulator/src emulator/src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin cloudvol \
 && cp target/release/cloudvol /cloudvol

FROM ${RUNTIME_IMAGE}
COPY --from=build /cloudvol /cloudvol
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/cloudvol"]
CMD ["run"]
