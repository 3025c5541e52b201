#!/usr/bin/env bash
# Installs what otactl's tests need on a Debian machine (Mosquitto; Go
# modules come through the go command) and runs every test.
# Usage: ./scripts/test.sh [extra go test flags]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  echo "installing mosquitto (the tests run a private broker on a loopback port)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
fi
# The Debian package starts a system broker on port 1883; the tests start
# their own on free ports and do not need it.

go mod download
# CI=true makes tests that need Mosquitto fail instead of skipping.
export CI="${CI:-true}"
go test -race -count=1 -timeout 15m "$@" ./...
