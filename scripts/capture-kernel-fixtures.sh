#!/usr/bin/env bash
# Regenerates tests/fixtures/kernel/ from the real Linux L2TP implementation: boots the reference
# kernel VM (../shared/tools/kernel-vm/vm, override with KERNEL_VM=...), runs
# scripts/kernel-guest/capture.sh in it, and unpacks what it prints into the fixture folder:
#   ip_l2tp_cases.json   golden `ip l2tp` argv -> stdout/stderr/exit status, l2tpeth MTUs,
#                        raw netlink replies and debugfs views
#   wire_cases.json      data-plane cases, plus wire_<case>.pcap outer-packet captures
# The fixtures record the behaviour pyl2tp mirrors, so regenerate them only on purpose (e.g. a
# new reference kernel) and review the diff. Needs root (QEMU, and the guest's namespaces are
# inside the VM only: nothing touches the host's network). Takes about 3 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
vm=${KERNEL_VM:-$repo/../shared/tools/kernel-vm/vm}
dest=$repo/tests/fixtures/kernel
[ "$(id -u)" = 0 ] || { echo "capture: run as root (QEMU/KVM image cache, netns in guest)" >&2; exit 1; }
[ -x "$vm" ] || { echo "capture: no VM tool at $vm" >&2; exit 1; }
"$vm" build >/dev/null
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ok=""
for attempt in 1 2; do
  set +e
  "$vm" run --timeout 1200 --mem 1024 "$repo/scripts/kernel-guest/capture.sh" \
    "$repo/scripts/kernel-guest" > "$tmp/console" 2> "$tmp/stderr"
  rc=$?
  set -e
  if [ "$rc" != 0 ]; then
    echo "capture: guest failed (rc=$rc), attempt $attempt" >&2; tail -20 "$tmp/console" "$tmp/stderr" >&2
    continue
  fi
  want=$(sed -n 's/^@@FX-BEGIN \([0-9a-f]*\)$/\1/p' "$tmp/console")
  sed -n 's/^@@FX //p' "$tmp/console" | base64 -d > "$tmp/fixtures.tgz" 2>/dev/null || true
  got=$(sha256sum < "$tmp/fixtures.tgz" | cut -d' ' -f1)
  # A kernel message printed in the middle of the stream would corrupt it: retry once.
  if [ -n "$want" ] && [ "$want" = "$got" ]; then ok=1; break; fi
  echo "capture: payload checksum mismatch, attempt $attempt" >&2
done
[ -n "$ok" ] || { echo "capture: giving up" >&2; exit 1; }
grep -v '^@@FX' "$tmp/console" >&2 || true
mkdir -p "$tmp/new"
tar -C "$tmp/new" --no-same-owner -xzf "$tmp/fixtures.tgz"
mkdir -p "$dest"
rm -f "$dest"/wire_*.pcap
cp "$tmp/new"/ip_l2tp_cases.json "$tmp/new"/wire_cases.json "$tmp/new"/wire_*.pcap "$dest"/
chmod 644 "$dest"/*.json "$dest"/*.pcap
echo "capture: wrote $(cd "$dest" && ls ip_l2tp_cases.json wire_cases.json wire_*.pcap | tr '\n' ' ')to $dest"
