#!/usr/bin/env bash
# Installs what Go cannot fetch: redis-server (the scheduler's store in the
# dev stack and the tests), BIND9 (named, for the RFC 2136 tests), nginx
# (the edge server of the delivery tests), PowerDNS Authoritative with its
# sqlite3 backend (the lego bridge's tests), python3 (the example event
# consumer in examples/events-python) and chromium (the fleet view's browser
# test, headless).
# Debian/Ubuntu packages; needs root or sudo when something is missing.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v named >/dev/null 2>&1 || need+=(bind9 bind9-utils)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v python3 >/dev/null 2>&1 || need+=(python3)
{ command -v pdns_server >/dev/null 2>&1 || [ -x /usr/sbin/pdns_server ]; } || need+=(pdns-server)
[ -e /usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql ] || [ -e /usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql ] || need+=(pdns-backend-sqlite3)
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "acmeq: missing ${need[*]}; install them (apt-get install -y ${need[*]}) and run again" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "acmeq: missing ${need[*]} and no apt-get here; install them with your package manager" >&2
  exit 1
fi
echo "acmeq: installing ${need[*]} from the system's packages" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The packages start system services we do not use: the tests start their own.
$sudo systemctl disable --now redis-server named nginx pdns >/dev/null 2>&1 || true
