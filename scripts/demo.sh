#!/usr/bin/env bash
# Sets everything up, then shows pyl2tp's main job: two hosts (network namespaces) joined by
# L2TPv3 Ethernet pseudowires that pyl2tp runs in userspace, carrying pings: first one set up
# statically with `ip l2tp` syntax, then one negotiated by pyl2tp's control plane (B is an LNS
# configured by a TOML file with a per-peer secret, A dials it); then what pyl2tp reports; then
# an L2TPv2 VPN session: A dials B over L2TPv2, PPP authenticates with CHAP and B assigns A an
# address from a pool, and pings cross the ppp interfaces.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
PYL2TP="$PWD/.venv/bin/pyl2tp"

tag=$(printf '%04x' $((RANDOM % 65536)))
A="pyl2tp-demo-a-$tag"; B="pyl2tp-demo-b-$tag"
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  rm -f "$CONF" "$CONF_A" "$SECRETS"
}
CONF=$(mktemp --suffix .toml); CONF_A=$(mktemp --suffix .toml); SECRETS=$(mktemp)
cat >"$SECRETS" <<'SECRETS'
# client   server  secret
demo-user  *       "demo password"
SECRETS
cat >"$CONF" <<TOML
[daemon]
host_name = "lns-b"

[[ppp]]             # PPP of the sessions B terminates: CHAP against a secrets file, a pool
name = "lns"
auth = ["chap-md5"]
secrets = "$SECRETS"
local_ip = "10.99.0.1"
pool = "10.99.0.10-10.99.0.99"
dns = ["10.99.0.1"]

[[listen]]          # accept control connections on UDP port 1701
encap = "udp"

[[peer]]            # ... from host A, authenticated with a shared secret
name = "host-a"
address = "10.200.0.1"
secret = "demo-secret"
hide_avps = true
ppp = "lns"
TOML
cat >"$CONF_A" <<'TOML'
[[ppp]]             # A is the VPN client: who it is, and to ask for DNS servers
name = "vpn"
user = "demo-user"
password = "demo password"
request_dns = true
TOML
trap cleanup EXIT INT TERM
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { local ns=$1; shift; printf '[%s]$ %s\n' "${ns%-*}" "$*"; ip netns exec "$ns" "$@"; }

step "two hosts joined by a link (network namespaces and a veth pair)"
ip netns add "$A"; ip netns add "$B"
ip -n "$A" link add "veth$tag" type veth peer name "veth$tag" netns "$B"
ip -n "$A" addr add 10.200.0.1/24 dev "veth$tag"; ip -n "$B" addr add 10.200.0.2/24 dev "veth$tag"
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; ip -n "$ns" link set "veth$tag" up; done
echo "A: 10.200.0.1  <->  B: 10.200.0.2"

step "a pyl2tp daemon on each host (the userspace L2TP data plane)"
ip netns exec "$A" "$PYL2TP" daemon --log-level warning --config "$CONF_A" &
pids+=($!)
ip netns exec "$B" "$PYL2TP" daemon --log-level warning --config "$CONF" &
pids+=($!)
for ns in "$A" "$B"; do
  for _ in $(seq 100); do [ -S "/run/pyl2tp/$ns.sock" ] && break; sleep 0.05; done
done

step "the tunnel and session, in 'ip l2tp' syntax"
run "$A" "$PYL2TP" add tunnel tunnel_id 1000 peer_tunnel_id 2000 encap udp \
    local 10.200.0.1 remote 10.200.0.2 udp_sport 5000 udp_dport 5000
run "$A" "$PYL2TP" add session name l2tp0 tunnel_id 1000 session_id 100 peer_session_id 200 \
    cookie 0123456789abcdef peer_cookie fedcba9876543210 seq both
run "$B" "$PYL2TP" add tunnel tunnel_id 2000 peer_tunnel_id 1000 encap udp \
    local 10.200.0.2 remote 10.200.0.1 udp_sport 5000 udp_dport 5000
run "$B" "$PYL2TP" add session name l2tp0 tunnel_id 2000 session_id 200 peer_session_id 100 \
    cookie fedcba9876543210 peer_cookie 0123456789abcdef seq both
run "$A" ip addr add 192.168.100.1/24 dev l2tp0; run "$A" ip link set l2tp0 up
run "$B" ip addr add 192.168.100.2/24 dev l2tp0; run "$B" ip link set l2tp0 up

step "traffic through the pseudowire"
run "$A" ping -c 5 -i 0.2 192.168.100.2
run "$A" ping -c 2 -s 1600 192.168.100.2 | tail -n 2

step "what pyl2tp reports"
run "$A" "$PYL2TP" show tunnel
run "$A" "$PYL2TP" show session
run "$A" "$PYL2TP" -s show session
run "$A" ip -s link show l2tp0 | sed -n '1,6p'

step "a dynamic L2TPv3 tunnel: A dials B's control plane (SCCRQ ... with message digests)"
out=$(run "$A" "$PYL2TP" dial peer 10.200.0.2 version 3 secret demo-secret hidden host_name host-a)
echo "$out"; tid=$(echo "$out" | tail -n1 | awk '{print $2}')
for _ in $(seq 100); do
  ip netns exec "$A" "$PYL2TP" control show | grep -q "state established" && break; sleep 0.05
done
run "$A" "$PYL2TP" call tunnel_id "$tid" pw_type eth ifname dyn0
for _ in $(seq 100); do
  [ "$(ip netns exec "$B" "$PYL2TP" -j show session | grep -o l2tpeth0)" ] && break; sleep 0.05
done
run "$A" ip addr add 192.168.101.1/24 dev dyn0; run "$A" ip link set dyn0 up
run "$B" ip addr add 192.168.101.2/24 dev l2tpeth0; run "$B" ip link set l2tpeth0 up
run "$A" ping -c 5 -i 0.2 192.168.101.2
run "$A" "$PYL2TP" control show
run "$B" "$PYL2TP" show session tunnel_id "$(ip netns exec "$B" "$PYL2TP" -j show tunnel \
    | python3 -c 'import json,sys; print([t["tunnel_id"] for t in json.load(sys.stdin) if t["tunnel_id"] != 2000][0])')"

step "an L2TPv2 VPN session: PPP over L2TP, CHAP, an address from B's pool"
out=$(run "$A" "$PYL2TP" dial peer 10.200.0.2 version 2 secret demo-secret host_name host-a)
echo "$out"; tid=$(echo "$out" | tail -n1 | awk '{print $2}')
run "$A" "$PYL2TP" call tunnel_id "$tid" pw_type ppp ppp vpn
for _ in $(seq 200); do
  ip netns exec "$A" "$PYL2TP" ppp show | grep -q "inet " && break; sleep 0.05
done
run "$A" "$PYL2TP" ppp show
run "$B" "$PYL2TP" ppp show
run "$A" ip -br addr show ppp0
run "$A" ping -c 5 -i 0.2 10.99.0.1

step "teardown: SIGTERM makes each daemon clear its tunnels (StopCCN) and delete its devices"
