# Builds nodectl and machined where Docker is available:
#   docker build -t ballast-build . && docker run --rm -v $PWD/_out:/out ballast-build
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=v0.0.0-dev
RUN make build VERSION=${VERSION} OUT=/dist

FROM debian:bookworm-slim
COPY --from=build /dist/bin/ /usr/local/bin/
CMD ["cp", "-a", "/usr/local/bin/nodectl", "/usr/local/bin/machined", "/out/"]
