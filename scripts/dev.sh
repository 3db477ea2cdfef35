#!/usr/bin/env bash
# The whole stack in one process, issuing certificates end to end from a
# local Pebble CA with no internet: acmeq dev --certificates N --out DIR.
# acmeq dev is built with -tags dev (it links Pebble and nats-server, which
# the production binary leaves out).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
n="${1:-20}"
out="${2:-certs}"
go run -tags dev ./cmd/acmeq dev --certificates "$n" --out "$out"
# Check every certificate with openssl, as a user would.
for d in "$out"/*/; do
  leaf=$(mktemp); chain=$(mktemp)
  awk -v leaf="$leaf" -v chain="$chain" '/BEGIN CERT/{n++} {print > (n==1 ? leaf : chain)}' "$d/tls.crt"
  openssl verify -CAfile "$out/ca.crt" -untrusted "$chain" "$leaf" >/dev/null
  rm -f "$leaf" "$chain"
done
echo "openssl verify: all $(ls -d "$out"/*/ | wc -l) certificates in $out verify against $out/ca.crt"
