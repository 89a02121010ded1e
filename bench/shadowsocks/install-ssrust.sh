#!/usr/bin/env bash
# Install shadowsocks-rust's ssserver and sslocal (the benchmark peer) into a cache outside the
# clone, from the Rust package registry; does nothing when both binaries are already there.
#   SSRUST_ROOT=/var/cache/wayfare/ssrust bench/shadowsocks/install-ssrust.sh
set -euo pipefail
SSRUST_ROOT=${SSRUST_ROOT:-/var/cache/wayfare/ssrust}
SSRUST_VERSION=${SSRUST_VERSION:-}
if [ -x "$SSRUST_ROOT/bin/ssserver" ] && [ -x "$SSRUST_ROOT/bin/sslocal" ]; then
  exit 0
fi
mkdir -p "$SSRUST_ROOT"
echo "installing shadowsocks-rust into $SSRUST_ROOT (a few minutes cold)" >&2
# Its own target dir, so the install neither reuses nor disturbs the project's build cache.
CARGO_TARGET_DIR="$SSRUST_ROOT/target" cargo install --locked shadowsocks-rust \
  ${SSRUST_VERSION:+--version "$SSRUST_VERSION"} --root "$SSRUST_ROOT" --no-default-features \
  --features "server local local-tunnel aead-cipher-2022 logging multi-threaded" >&2
rm -rf "$SSRUST_ROOT/target"
