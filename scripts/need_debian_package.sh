#!/usr/bin/env bash
# need_debian_package.sh PACKAGE PATH WHAT [ELSE]
# Makes sure PATH exists, installing Debian's PACKAGE when it is missing and this runs as root
# or with passwordless sudo; otherwise stops with one message that names the command to run.
# WHAT says what needs it; ELSE, if given, what to do without it. Examples (the Makefile):
#   need_debian_package.sh chromium /usr/bin/chromium "the browser tests" "make quick"
#   need_debian_package.sh dataset-fashion-mnist /usr/share/datasets/fashion-mnist "Fashion-MNIST"
set -euo pipefail
package=$1 path=$2 what=$3 else=${4:-}
[ -e "$path" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    sudo=none
fi
if [ "${sudo[*]}" = none ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "error: $what needs $path, and it cannot be installed from here." \
         "Install it with: sudo apt-get install -y $package${else:+ (or: $else)}" >&2
    exit 1
fi
echo "installing Debian's $package for $what"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$package" >/dev/null
[ -e "$path" ] || { echo "error: apt-get installed no $path" >&2; exit 1; }
