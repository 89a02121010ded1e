#!/usr/bin/env bash
# Wayfare shadowsocks (2022-blake3-aes-256-gcm) vs shadowsocks-libev (chacha20-ietf-poly1305) and
# shadowsocks-rust (ssserver + sslocal --protocol tunnel, 2022-blake3-aes-256-gcm, the same crate
# Wayfare uses) in the namespace lab, alternating, iperf3 TCP up and down through a port forward
# (`wayfare proxy connect --forward` vs `ss-tunnel` vs `sslocal`). Needs root, iproute2, iperf3,
# shadowsocks-libev, cargo (shadowsocks-rust is installed into SSRUST_ROOT on the first run).
#   ROUNDS=3 SECONDS_PER_RUN=5 bench/shadowsocks/run.sh
set -euo pipefail
ROUNDS=${ROUNDS:-3}
SECS=${SECONDS_PER_RUN:-5}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
for tool in ip iperf3 ss-server ss-tunnel; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y iproute2 iperf3 shadowsocks-libev" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }

cargo build --release --quiet -p wayfare-cli
BIN=$CARGO_TARGET_DIR/release/wayfare
export SSRUST_ROOT=${SSRUST_ROOT:-/var/cache/wayfare/ssrust}
"$ROOT/bench/shadowsocks/install-ssrust.sh"
SSSERVER=$SSRUST_ROOT/bin/ssserver; SSLOCAL=$SSRUST_ROOT/bin/sslocal

S=$(printf '%06x' $((RANDOM * RANDOM % 16777216)))
B=wfb-$S; SL=wfs-$S; I=wfi-$S
PIDS=()
WORK=$(mktemp -d)
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for n in "$B" "$SL" "$I"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

for n in "$B" "$SL" "$I"; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip link add "vb$S" netns "$B" type veth peer name "vs$S" netns "$SL"
ip link add "vu$S" netns "$SL" type veth peer name "vi$S" netns "$I"
ip -n "$B" addr add 198.18.1.2/24 dev "vb$S"; ip -n "$B" link set "vb$S" up
ip -n "$SL" addr add 198.18.1.1/24 dev "vs$S"; ip -n "$SL" link set "vs$S" up
ip -n "$SL" addr add 198.18.2.1/24 dev "vu$S"; ip -n "$SL" link set "vu$S" up
ip -n "$I" addr add 198.18.2.2/24 dev "vi$S"; ip -n "$I" link set "vi$S" up

ip netns exec "$I" iperf3 -s -p 5201 >/dev/null 2>&1 & PIDS+=($!)

# Wayfare: seller in the seller ns, forward 127.0.0.1:15201 -> iperf3 in the buyer ns.
ip netns exec "$SL" "$BIN" proxy serve --listen 198.18.1.1:8388 --allow 198.18.0.0/15 --json \
  --meter-every 0 >"$WORK/uri" & PIDS+=($!)
for _ in $(seq 100); do grep -q 'ss://' "$WORK/uri" && break; sleep 0.1; done
URI=$(grep -o 'ss://[^"]*' "$WORK/uri" | head -n 1)
[ -n "$URI" ] || { echo "Wayfare seller did not start" >&2; exit 1; }
ip netns exec "$B" "$BIN" proxy connect --uri "$URI" --listen 127.0.0.1:11080 \
  --forward 127.0.0.1:15201=198.18.2.2:5201 >/dev/null 2>&1 & PIDS+=($!)

# Wayfare legacy mode (same cipher as libev), for information: forward on 15203.
ip netns exec "$SL" "$BIN" proxy serve --legacy --listen 198.18.1.1:8390 --allow 198.18.0.0/15 --json \
  --meter-every 0 >"$WORK/uri2" & PIDS+=($!)
for _ in $(seq 100); do grep -q 'ss://' "$WORK/uri2" && break; sleep 0.1; done
URI2=$(grep -o 'ss://[^"]*' "$WORK/uri2" | head -n 1)
[ -n "$URI2" ] || { echo "Wayfare legacy seller did not start" >&2; exit 1; }
ip netns exec "$B" "$BIN" proxy connect --uri "$URI2" --listen 127.0.0.1:11081 \
  --forward 127.0.0.1:15203=198.18.2.2:5201 >/dev/null 2>&1 & PIDS+=($!)

# libev: ss-server + ss-tunnel, chacha20-ietf-poly1305.
PW=$(head -c 24 /dev/urandom | base64)
ip netns exec "$SL" ss-server -s 198.18.1.1 -p 8389 -k "$PW" -m chacha20-ietf-poly1305 >/dev/null 2>&1 & PIDS+=($!)
ip netns exec "$B" ss-tunnel -s 198.18.1.1 -p 8389 -b 127.0.0.1 -l 15202 -k "$PW" \
  -m chacha20-ietf-poly1305 -L 198.18.2.2:5201 >/dev/null 2>&1 & PIDS+=($!)

# shadowsocks-rust: ssserver + sslocal as a tunnel (port forward) on 15204, same 2022 cipher.
RKEY=$(head -c 32 /dev/urandom | base64)
ip netns exec "$SL" "$SSSERVER" -s 198.18.1.1:8391 -m 2022-blake3-aes-256-gcm -k "$RKEY" >"$WORK/ssserver.log" 2>&1 & PIDS+=($!)
ip netns exec "$B" "$SSLOCAL" --protocol tunnel -b 127.0.0.1:15204 --forward-addr 198.18.2.2:5201 \
  -s 198.18.1.1:8391 -m 2022-blake3-aes-256-gcm -k "$RKEY" >"$WORK/sslocal.log" 2>&1 & PIDS+=($!)
sleep 1

# iperf3 receiver-side throughput in Mbit/s; $1 = local port, $2 = "" (up) or "-R" (down).
run() {
  local out
  out=$(ip netns exec "$B" iperf3 -c 127.0.0.1 -p "$1" -t "$SECS" -f m $2 2>&1) || { echo "iperf3 failed: $out" >&2; echo 0; return; }
  echo "$out" | awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") v = $(i-1) } END { print v + 0 }'
}
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

: >"$WORK/wu"; : >"$WORK/wd"; : >"$WORK/lu"; : >"$WORK/ld"; : >"$WORK/cu"; : >"$WORK/cd"; : >"$WORK/ru"; : >"$WORK/rd"
for r in $(seq "$ROUNDS"); do
  wu=$(run 15201 ""); lu=$(run 15202 ""); ru=$(run 15204 ""); cu=$(run 15203 "")
  wd=$(run 15201 -R); ld=$(run 15202 -R); rd=$(run 15204 -R); cd_=$(run 15203 -R)
  echo "round $r: wayfare up $wu down $wd | libev up $lu down $ld | shadowsocks-rust up $ru down $rd | wayfare-legacy(chacha20) up $cu down $cd_ (Mbit/s)"
  echo "$wu" >>"$WORK/wu"; echo "$wd" >>"$WORK/wd"; echo "$lu" >>"$WORK/lu"; echo "$ld" >>"$WORK/ld"
  echo "$ru" >>"$WORK/ru"; echo "$rd" >>"$WORK/rd"; echo "$cu" >>"$WORK/cu"; echo "$cd_" >>"$WORK/cd"
done
WU=$(median <"$WORK/wu"); WD=$(median <"$WORK/wd"); LU=$(median <"$WORK/lu"); LD=$(median <"$WORK/ld")
RU=$(median <"$WORK/ru"); RD=$(median <"$WORK/rd"); CU=$(median <"$WORK/cu"); CD=$(median <"$WORK/cd")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }
echo "medians over $ROUNDS rounds of ${SECS}s: wayfare up $WU down $WD, libev up $LU down $LD, shadowsocks-rust up $RU down $RD (Mbit/s)"
echo "INFO same cipher as libev (chacha20-ietf-poly1305): wayfare_legacy_up_mbps=$CU ratio_up=$(ratio "$CU" "$LU") wayfare_legacy_down_mbps=$CD ratio_down=$(ratio "$CD" "$LD")"
echo "RESULT wayfare_up_mbps=$WU libev_up_mbps=$LU ratio_up=$(ratio "$WU" "$LU") wayfare_down_mbps=$WD libev_down_mbps=$LD ratio_down=$(ratio "$WD" "$LD") ssrust_up_mbps=$RU ssrust_ratio_up=$(ratio "$WU" "$RU") ssrust_down_mbps=$RD ssrust_ratio_down=$(ratio "$WD" "$RD")"
