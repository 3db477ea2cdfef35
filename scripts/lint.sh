#!/usr/bin/env bash
# golangci-lint at a pinned version, built from the Go module proxy (the
# first run compiles it, a few minutes; later runs use Go's build cache).
# `go run pkg@version` builds it apart from acmeq's module: go.mod and
# go.sum are neither read nor changed. Configuration: .golangci.yml.
# Another golangci-lint running on the machine is waited for, not an error
# (--allow-serial-runners).
set -euo pipefail
cd "$(dirname "$0")/.."
GOLANGCI_LINT_VERSION=v2.15.0
exec go run "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@${GOLANGCI_LINT_VERSION}" run --allow-serial-runners ./... "$@"
