#!/usr/bin/env bash
# Installs everything pyl2tp's demo and tests need on a fresh Debian machine, as root:
# the system tools (iproute2, nftables, tshark, xl2tpd, l2tpns, pppd, QEMU for the reference-kernel VM)
# and a virtualenv in .venv with pyl2tp and its test tools. Idempotent and quiet when done.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "setup: run as root (network namespaces and TAP devices need it)" >&2; exit 1; }

PKGS="iproute2 nftables iputils-ping tshark xl2tpd l2tpns ppp qemu-system-x86 busybox-static cpio kmod procps"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "setup: installing system packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq >/dev/null
  apt-get install -y -qq $missing >/dev/null
fi
# xl2tpd's and l2tpns's packages start system daemons on 1701; tests run their own instances.
if command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now xl2tpd l2tpns >/dev/null 2>&1 || true
fi
pkill -x xl2tpd 2>/dev/null || true
pkill -x l2tpns 2>/dev/null || true

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.pyl2tp-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing pyl2tp and test tools into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi
