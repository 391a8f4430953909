# syntax=docker/dockerfile:1
# The whp image for EKS: one static binary, every role chosen by its
# command (ingest, processor, dispatcher, reconcile). Multi-stage: the build
# stage has the Go toolchain; the final stage is distroless/static, which
# holds CA certificates, tzdata and a nonroot user and nothing else — no
# shell, no package manager.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO off gives a static binary; -trimpath keeps build paths out of it. The
# image tag carries the version (.git is not in the build context).
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/whp ./cmd/whp

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/whp /whp
# 65532 is distroless's nonroot; the manifests also demand runAsNonRoot.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/whp"]
