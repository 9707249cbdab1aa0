# Multi-stage build of the aerie binary. RocksDB comes from the distribution
# (Debian bookworm: librocksdb-dev 7.8 to build, librocksdb7.8 to run).
FROM golang:1.26-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends librocksdb-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
COPY third_party ./third_party
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=1 go build -trimpath \
    -ldflags "-X github.com/aeriemq/aerie/internal/buildinfo.Version=${VERSION}" \
    -o /out/aerie ./cmd/aerie

FROM debian:bookworm-slim
# postgresql lets `aerie serve` run its private cluster when no DATABASE_URL
# is given; the control plane in docker-compose.yml uses the postgres service.
RUN apt-get update \
 && apt-get install -y --no-install-recommends librocksdb7.8 postgresql ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /var/lib/aerie aerie
COPY --from=build /out/aerie /usr/local/bin/aerie
USER aerie
WORKDIR /var/lib/aerie
ENV AERIE_DATA_DIR=/var/lib/aerie
VOLUME /var/lib/aerie
EXPOSE 8080 1883 8083 8883 8084
ENTRYPOINT ["aerie"]
CMD ["serve"]
