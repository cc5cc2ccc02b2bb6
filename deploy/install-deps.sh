#!/usr/bin/env bash
# Installs the Debian packages narrator builds, tests and runs with.
# Idempotent: packages already present are left as they are.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libzmq3-dev libsodium-dev libhiredis-dev libmsgpack-dev
  libopenblas-dev libcjson-dev
  libjpeg62-turbo-dev libpng-dev libwebp-dev libexif-dev
  flite1-dev
  libcriterion-dev redis-server
)

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
