#!/usr/bin/env bash
# Runs acmeq's checks (gofmt, go vet, golangci-lint) and its tests against
# real NATS, redis-server and Pebble started by the tests on loopback.
# Installs what Go cannot fetch first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt -l lists unformatted files:" >&2
  echo "$unformatted" >&2
  exit 1
fi
# Both builds of the binary: the production one, and the one with acmeq dev
# and acmeq bench (-tags dev).
go vet ./...
go vet -tags dev ./...
# golangci-lint (.golangci.yml): errors wrapped and matched, functions
# short enough to read, no unused code, bodies closed.
scripts/lint.sh
# The race detector on everything: the worker, scheduler and end-to-end
# packages are the concurrent ones, and the rest is cheap.
go test -race -count=1 -timeout 15m ./...
# Only cmd/acmeq has files that depend on the tag.
go test -race -count=1 -timeout 15m -tags dev ./cmd/acmeq
