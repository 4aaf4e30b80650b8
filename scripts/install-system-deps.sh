#!/usr/bin/env bash
# Installs the system packages churnstream's local stack and tests need (Debian/Ubuntu):
# Java 17 + Maven (to fetch and run the Kafka broker), redis-server, kcat, Chromium and its
# driver (the dashboard's browser tests), wrk (the API benchmark), Prometheus (`churnstream
# infra up --prometheus` and the dashboard's query test).
# Idempotent: installs only what is missing. Needs root (or sudo) when something is missing.
set -euo pipefail

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)

if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present (java, mvn, redis-server, kcat, chromium, chromedriver, wrk, prometheus)"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "missing system packages: ${missing[*]}" >&2
  echo "install them with your package manager (e.g. apt-get install ${missing[*]})" >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages: ${missing[*]} (no apt-get here: install them yourself)" >&2
  exit 1
fi

echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's packages start a system-wide redis on 6379 and Prometheus on 9090 (where systemd
# runs); churnstream runs its own instances.
for unit in redis-server prometheus; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$unit" 2>/dev/null; then
    $SUDO systemctl stop "$unit" || true
  fi
done
