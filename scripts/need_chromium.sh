#!/usr/bin/env bash
# The browser tests (tests/test_browser.py) drive Debian's Chromium; never `playwright install`.
# Installs the chromium package when it is missing and this runs as root or with sudo;
# otherwise stops with one message that names the command to run.
set -euo pipefail
CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    sudo=none
fi
if [ "${sudo[*]}" = none ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "error: the browser tests need Chromium at $CHROMIUM, and it cannot be installed from" \
         "here. Install it with: sudo apt-get install -y chromium" \
         "(or run the tests without the browser: make quick)" >&2
    exit 1
fi
echo "installing Debian's chromium for the browser tests"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium >/dev/null
[ -x "$CHROMIUM" ] || { echo "error: apt-get installed no $CHROMIUM" >&2; exit 1; }
