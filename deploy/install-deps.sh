#!/usr/bin/env bash
# Installs the Debian packages narrator builds, tests and runs with.
# Idempotent: packages already present are left as they are.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libzmq3-dev libsodium-dev libhiredis-dev libmsgpack-dev
  libopenblas-dev libcjson-dev libminizip-dev
  libjpeg62-turbo-dev libpng-dev libwebp-dev libexif-dev
  libtiff-dev libgif-dev libheif-dev
  libexempi-dev
  flite1-dev libpocketsphinx-dev pocketsphinx-en-us
  libespeak-ng-dev
  libcriterion-dev redis-server
  python3 python3-yaml curl ca-certificates
  libmicrohttpd-dev libcurl4-openssl-dev
  clang iproute2
  faketime
)
# The browser test of the gateway's web page (tests/web) needs Chromium
# (about 140 MB to download, 350 MB installed), so it is opt-in:
# NARRATOR_BROWSER_TESTS=1 deploy/install-deps.sh, then npm ci in tests/web.
if [ "${NARRATOR_BROWSER_TESTS:-0}" = 1 ]; then
  packages+=(chromium)
fi
# The engine's tests on emulated CPUs (tests/cross/run.sh, which installs
# the rest of what its full run needs) want QEMU's user-mode emulators
# (12 MB to download, 100 MB installed): NARRATOR_CROSS_TESTS=1.
if [ "${NARRATOR_CROSS_TESTS:-0}" = 1 ]; then
  packages+=(qemu-user)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
