#!/usr/bin/env bash
# Runs acmeq's checks and tests against real NATS, redis-server and Pebble
# started by the tests on loopback. Installs what Go cannot fetch first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt -l lists unformatted files:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
# The race detector on everything: the worker, scheduler and end-to-end
# packages are the concurrent ones, and the rest is cheap.
go test -race -count=1 -timeout 15m ./...
