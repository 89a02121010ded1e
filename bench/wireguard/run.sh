#!/usr/bin/env bash
# Wayfare WireGuard (gotatun + tun-rs, both ends) vs Debian's wireguard-go + wg (both ends) and,
# when present, current upstream wireguard-go (../shared/bench-peers/wireguard-go, or CURRENT_WG_GO)
# in the namespace lab, alternating, iperf3 TCP up and down through each tunnel, plus raw veth.
# Needs root, iproute2, iperf3, nftables, wireguard-go, wireguard-tools.
# Also: 20 Wayfare buyers at once on the one seller port (aggregate), and CPU seconds per GiB
# carried on each end of each pair (user + system time of the tunnel processes, from /proc).
#   ROUNDS=5 SECONDS_PER_RUN=5 bench/wireguard/run.sh
#   WAYFARE_TUN_OFFLOAD=off ...   Wayfare without TUN offload
#   WAYFARE_UDP_OFFLOAD=off ...   Wayfare without UDP GSO/GRO and batches (one datagram a syscall)
#   MULTI=0 ...   skip the 20-buyer run
#   WAYFARE_BIN=/path/to/wayfare ...   bench that binary instead of building the release one
#   PERF=1 ...   also profiles one Wayfare upload with `perf` (both wayfare tunnel processes);
#                PERF_OUT=file keeps the perf.data
set -euo pipefail
ROUNDS=${ROUNDS:-5}
SECS=${SECONDS_PER_RUN:-5}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
for tool in ip iperf3 nft wireguard-go wg; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y iproute2 iperf3 nftables wireguard-go wireguard-tools" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
export WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1
CUR=${CURRENT_WG_GO:-$ROOT/../shared/bench-peers/wireguard-go}
[ -x "$CUR" ] || { echo "no current wireguard-go at $CUR: current_* figures are left out" >&2; CUR=""; }

if [ -n "${WAYFARE_BIN:-}" ]; then BIN=$WAYFARE_BIN; else  # WAYFARE_BIN=path: that binary, no build
  cargo build --release --quiet -p wayfare-cli
  BIN=$CARGO_TARGET_DIR/release/wayfare
fi

S=$(printf '%06x' $((RANDOM * RANDOM % 16777216)))
B=wfb-$S; SL=wfs-$S; I=wfi-$S
PIDS=()
WORK=$(mktemp -d)
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for n in "$B" "$SL" "$I"; do ip netns del "$n" 2>/dev/null || true; done
  rm -f "/var/run/wireguard/gs$S.sock" "/var/run/wireguard/gb$S.sock" \
    "/var/run/wireguard/cs$S.sock" "/var/run/wireguard/cb$S.sock"
  rm -rf "$WORK"
}
trap cleanup EXIT

for n in "$B" "$SL" "$I"; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip link add "vb$S" netns "$B" type veth peer name "vs$S" netns "$SL"
ip link add "vu$S" netns "$SL" type veth peer name "vi$S" netns "$I"
ip -n "$B" addr add 198.18.1.2/24 dev "vb$S"; ip -n "$B" link set "vb$S" up
ip -n "$SL" addr add 198.18.1.1/24 dev "vs$S"; ip -n "$SL" link set "vs$S" up
ip -n "$SL" addr add 198.18.2.1/24 dev "vu$S"; ip -n "$SL" link set "vu$S" up
ip -n "$I" addr add 198.18.2.2/24 dev "vi$S"; ip -n "$I" addr add 198.18.2.3/24 dev "vi$S"
ip -n "$I" addr add 198.18.2.4/24 dev "vi$S"
MULTI=${MULTI:-20}
for n in $(seq "$MULTI"); do ip -n "$I" addr add "198.18.2.$((100 + n))/24" dev "vi$S"; done
ip -n "$I" link set "vi$S" up

# iperf3 servers: internet host (through the tunnels) and seller host (raw veth).
ip netns exec "$I" iperf3 -s -p 5201 >/dev/null 2>&1 & PIDS+=($!)
ip netns exec "$SL" iperf3 -s -B 198.18.1.1 -p 5202 >/dev/null 2>&1 & PIDS+=($!)

# Wayfare: seller (pool 198.19.0.0/24) and buyer, split tunnel to 198.18.2.2 only.
ip netns exec "$SL" "$BIN" tunnel serve --port 51820 --endpoint 198.18.1.1:51820 --pool 198.19.0.0/24 \
  --allow 198.18.0.0/15 --tun "ws$S" --sessions $((MULTI + 1)) --out "$WORK" >"$WORK/serve.out" & PIDS+=($!)
SERVE_PID=$!
for _ in $(seq 100); do grep -q '^serving on' "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^serving on' "$WORK/serve.out" || { echo "Wayfare seller did not start" >&2; exit 1; }
ip netns exec "$B" "$BIN" tunnel connect --config "$WORK/session-1.conf" --tun "wb$S" --no-kill-switch \
  --no-dns --state-dir "$WORK/state" --split 198.18.2.2/32 >"$WORK/connect.out" & PIDS+=($!)
CONNECT_PID=$!
for _ in $(seq 100); do grep -q '^connected' "$WORK/connect.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^connected' "$WORK/connect.out" || { echo "Wayfare buyer did not connect" >&2; exit 1; }

# A wireguard-go pair: $1 binary, $2 iface prefix, $3 third octet of 198.19.X.0/24, $4 seller
# port, $5 internet address routed through it.
wggo_pair() {
  local bin=$1 p=$2 x=$3 port=$4 dst=$5
  (umask 077; wg genkey >"$WORK/${p}s.key"; wg genkey >"$WORK/${p}b.key")
  local spub bpub
  spub=$(wg pubkey <"$WORK/${p}s.key"); bpub=$(wg pubkey <"$WORK/${p}b.key")
  ip netns exec "$SL" "$bin" -f "${p}s$S" >/dev/null 2>&1 & PIDS+=($!)
  eval "${p}_SELLER_PID=$!"
  ip netns exec "$B" "$bin" -f "${p}b$S" >/dev/null 2>&1 & PIDS+=($!)
  eval "${p}_BUYER_PID=$!"
  for _ in $(seq 100); do [ -S "/var/run/wireguard/${p}s$S.sock" ] && [ -S "/var/run/wireguard/${p}b$S.sock" ] && break; sleep 0.1; done
  ip netns exec "$SL" wg set "${p}s$S" listen-port "$port" private-key "$WORK/${p}s.key" peer "$bpub" allowed-ips "198.19.$x.2/32"
  ip -n "$SL" addr add "198.19.$x.1/24" dev "${p}s$S"; ip -n "$SL" link set "${p}s$S" mtu 1420 up
  ip netns exec "$SL" nft -f - <<NFT
table ip bench_${p}go {
  chain postrouting { type nat hook postrouting priority srcnat; policy accept;
    ip saddr 198.19.$x.0/24 oifname != "${p}s$S" masquerade
  }
}
NFT
  ip netns exec "$B" wg set "${p}b$S" private-key "$WORK/${p}b.key" peer "$spub" endpoint "198.18.1.1:$port" allowed-ips 0.0.0.0/0
  ip -n "$B" addr add "198.19.$x.2/32" dev "${p}b$S"; ip -n "$B" link set "${p}b$S" mtu 1420 up
  ip -n "$B" route add "$dst/32" dev "${p}b$S"
}
ip netns exec "$SL" sysctl -qw net.ipv4.ip_forward=1
# Debian's wireguard-go: 198.19.1.0/24, port 51821, to 198.18.2.3; current: 198.19.2.0/24, 51822, 198.18.2.4.
wggo_pair "$(command -v wireguard-go)" g 1 51821 198.18.2.3
[ -n "$CUR" ] && wggo_pair "$CUR" c 2 51822 198.18.2.4
sleep 1

# iperf3 receiver-side throughput in Mbit/s; $1 = server address, $2 = port, $3 = "" or "-R".
run() {
  local out
  out=$(ip netns exec "$B" iperf3 -c "$1" -p "$2" -t "$SECS" -f m $3 2>&1) || { echo "iperf3 failed: $out" >&2; echo 0; return; }
  echo "$out" | awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") v = $(i-1) } END { print v + 0 }'
}
# CPU time (user + system, in clock ticks) of a process so far.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
# run, adding the CPU ticks of seller $4 and buyer $5 and the bytes carried to $WORK/cpu-$6.
run_cpu() {
  local s0 b0 mbps
  s0=$(ticks "$4"); b0=$(ticks "$5")
  mbps=$(run "$1" "$2" "$3")
  echo "$(( $(ticks "$4") - s0 )) $(( $(ticks "$5") - b0 )) $mbps" >>"$WORK/cpu-$6"
  echo "$mbps"
}
# Seller and buyer CPU seconds per GiB carried, over every run recorded in $WORK/cpu-$1.
cpu_per_gib() {
  awk -v hz="$HZ" -v secs="$SECS" '{ s += $1; b += $2; gib += $3 * 1e6 * secs / 8 / 2^30 }
    END { if (gib > 0) printf "%.2f %.2f", s / hz / gib, b / hz / gib; else print "nan nan" }' "$WORK/cpu-$1"
}
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# Sanity: each tunnel carries traffic.
ip netns exec "$B" iperf3 -c 198.18.2.2 -p 5201 -t 1 >/dev/null || { echo "no traffic through Wayfare" >&2; exit 1; }
ip netns exec "$B" iperf3 -c 198.18.2.3 -p 5201 -t 1 >/dev/null || { echo "no traffic through wireguard-go" >&2; exit 1; }
[ -z "$CUR" ] || ip netns exec "$B" iperf3 -c 198.18.2.4 -p 5201 -t 1 >/dev/null || { echo "no traffic through current wireguard-go" >&2; exit 1; }

: >"$WORK/wu"; : >"$WORK/wd"; : >"$WORK/gu"; : >"$WORK/gd"; : >"$WORK/cu"; : >"$WORK/cd"; : >"$WORK/v"
for r in $(seq "$ROUNDS"); do
  wu=$(run_cpu 198.18.2.2 5201 "" "$SERVE_PID" "$CONNECT_PID" w)
  gu=$(run_cpu 198.18.2.3 5201 "" "$g_SELLER_PID" "$g_BUYER_PID" g); cu=0
  [ -z "$CUR" ] || cu=$(run_cpu 198.18.2.4 5201 "" "$c_SELLER_PID" "$c_BUYER_PID" c)
  wd=$(run_cpu 198.18.2.2 5201 -R "$SERVE_PID" "$CONNECT_PID" w)
  gd=$(run_cpu 198.18.2.3 5201 -R "$g_SELLER_PID" "$g_BUYER_PID" g); cd=0
  [ -z "$CUR" ] || cd=$(run_cpu 198.18.2.4 5201 -R "$c_SELLER_PID" "$c_BUYER_PID" c)
  v=$(run 198.18.1.1 5202 "")
  echo "round $r: wayfare up $wu down $wd | wireguard-go (Debian) up $gu down $gd | current wireguard-go up $cu down $cd | veth $v (Mbit/s)"
  echo "$wu" >>"$WORK/wu"; echo "$wd" >>"$WORK/wd"; echo "$gu" >>"$WORK/gu"; echo "$gd" >>"$WORK/gd"
  echo "$cu" >>"$WORK/cu"; echo "$cd" >>"$WORK/cd"; echo "$v" >>"$WORK/v"
done
WU=$(median <"$WORK/wu"); WD=$(median <"$WORK/wd"); GU=$(median <"$WORK/gu"); GD=$(median <"$WORK/gd")
CU=$(median <"$WORK/cu"); CD=$(median <"$WORK/cd"); V=$(median <"$WORK/v")
if [ "${PERF:-0}" = 1 ] && command -v perf >/dev/null; then
  perf record -q -F 999 -g -o "$WORK/perf.data" -p "$SERVE_PID,$CONNECT_PID" -- sleep "$SECS" >/dev/null 2>&1 &
  PERF_PID=$!
  run 198.18.2.2 5201 "" >/dev/null
  wait "$PERF_PID" || true
  echo "perf: top symbols (self time) of both Wayfare ends during one upload"
  perf report -q -i "$WORK/perf.data" --no-children -g none --sort dso,symbol 2>/dev/null | grep -v '^$' | grep '%' | head -30 || true
  [ -z "${PERF_OUT:-}" ] || cp "$WORK/perf.data" "$PERF_OUT"
fi
read -r WCS WCB <<<"$(cpu_per_gib w)"; read -r GCS GCB <<<"$(cpu_per_gib g)"
CCS=nan; CCB=nan
[ -z "$CUR" ] || read -r CCS CCB <<<"$(cpu_per_gib c)"
echo "CPU seconds per GiB carried (seller / buyer): wayfare $WCS / $WCB, wireguard-go (Debian) $GCS / $GCB, current wireguard-go $CCS / $CCB"

# 20 buyers at once: Wayfare sessions 2..MULTI+1 on the same seller port, each its own TUN and
# its own internet address (198.18.2.101...) with its own iperf3 server, all started together.
MU=0; MD=0
if [ "$MULTI" -gt 0 ]; then
  for n in $(seq "$MULTI"); do
    ip netns exec "$I" iperf3 -s -p $((5300 + n)) >/dev/null 2>&1 & PIDS+=($!)
    ip netns exec "$B" "$BIN" tunnel connect --config "$WORK/session-$((n + 1)).conf" --tun "wm$n$S" \
      --no-kill-switch --no-dns --state-dir "$WORK/state-m$n" --split "198.18.2.$((100 + n))/32" \
      >"$WORK/connect-m$n.out" 2>&1 & PIDS+=($!)
  done
  for n in $(seq "$MULTI"); do
    for _ in $(seq 100); do grep -q '^connected' "$WORK/connect-m$n.out" 2>/dev/null && break; sleep 0.1; done
    grep -q '^connected' "$WORK/connect-m$n.out" || { echo "Wayfare buyer $n of $MULTI did not connect" >&2; exit 1; }
  done
  sleep 1
  # Sum of the receivers' throughput of MULTI iperf3 runs at once; $1 = "" or "-R". Called in $(...).
  multi() {
    for n in $(seq "$MULTI"); do run "198.18.2.$((100 + n))" $((5300 + n)) "$1" >"$WORK/m$n" & done
    wait # (in the $(...) subshell: only these runs are its children)
    cat "$WORK"/m[0-9]* | awk '{ s += $1 } END { print s + 0 }'
    rm -f "$WORK"/m[0-9]*
  }
  MU=$(multi ""); MD=$(multi -R)
  echo "$MULTI Wayfare buyers at once on one seller port: aggregate up $MU down $MD (Mbit/s)"
fi
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }
echo "medians over $ROUNDS rounds of ${SECS}s: wayfare up $WU down $WD, wireguard-go (Debian) up $GU down $GD, current wireguard-go up $CU down $CD, veth $V (Mbit/s)"
echo "RESULT wayfare_up_mbps=$WU wireguard_go_up_mbps=$GU ratio_up=$(ratio "$WU" "$GU") wayfare_down_mbps=$WD wireguard_go_down_mbps=$GD ratio_down=$(ratio "$WD" "$GD") current_up_mbps=$CU current_ratio_up=$(ratio "$WU" "$CU") current_down_mbps=$CD current_ratio_down=$(ratio "$WD" "$CD") veth_mbps=$V multi_buyers=$MULTI multi_up_mbps=$MU multi_down_mbps=$MD wayfare_cpu_s_per_gib_seller=$WCS wayfare_cpu_s_per_gib_buyer=$WCB wireguard_go_cpu_s_per_gib_seller=$GCS wireguard_go_cpu_s_per_gib_buyer=$GCB current_cpu_s_per_gib_seller=$CCS current_cpu_s_per_gib_buyer=$CCB"
