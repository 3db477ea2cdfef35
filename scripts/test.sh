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
# packages are the concurrent ones, and the rest is cheap. The end-to-end
# package (./tests: worker processes SIGKILLed, Redis paused, a 3-node
# cluster, renewals of short-lived certificates) runs last and alone: its
# timing assertions are about acmeq, not about the other packages' tests
# sharing two cores with it.
go test -race -count=1 -timeout 15m $(go list ./... | grep -v '^github.com/acmeq/acmeq/tests$')
go test -race -count=1 -timeout 15m ./tests/
# Only cmd/acmeq has files that depend on the tag.
go test -race -count=1 -timeout 15m -tags dev ./cmd/acmeq
