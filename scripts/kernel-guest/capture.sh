# Guest script (runs as root inside the reference-kernel VM); started by
# scripts/capture-kernel-fixtures.sh as:  vm run .../capture.sh GUEST_SCRIPT_DIR
# (the VM sources this file, so $0 is not its path: the directory comes as $1).
# Records the golden `ip l2tp` cases and the data-plane captures, then prints them as one
# base64 tar.gz framed by @@FX lines: the guest's filesystem is a throwaway copy-on-write view,
# so the console is the only way results get back to the host.
here=${1:?usage: capture.sh GUEST_SCRIPT_DIR}
out=/tmp/fixture-out
rm -rf "$out"; mkdir -p "$out"
/usr/bin/python3 "$here/ip_l2tp_cases.py" "$out/ip_l2tp_cases.json" || exit 10
/usr/bin/python3 "$here/wire_cases.py" "$out" || exit 11
chmod 644 "$out"/*
tar -C "$out" --owner=0 --group=0 --numeric-owner -czf /tmp/fixtures.tgz .
echo "@@FX-BEGIN $(sha256sum < /tmp/fixtures.tgz | cut -d' ' -f1)"
base64 -w 76 /tmp/fixtures.tgz | sed 's/^/@@FX /'
echo "@@FX-END"
