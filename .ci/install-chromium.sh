#!/usr/bin/env bash
# Installs headless Chromium from Debian's chromium package for the browser
# test of the dashboard (internal/app, TestDashboardInBrowser). Does nothing
# when /usr/bin/chromium already exists. Runs as root on a Debian machine.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  echo "== chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present)"
  exit 0
fi

echo "== installing chromium"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
echo "== chromium: $(/usr/bin/chromium --version 2>/dev/null)"
