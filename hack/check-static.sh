#!/usr/bin/env bash
# Fails unless the given ELF binary is statically linked: no program interpreter (PT_INTERP) and
# no shared-library dependencies (DT_NEEDED). A static-pie still has a .dynamic section (for its
# own relocations), so the check looks at those two facts, not at the section's presence.
set -euo pipefail
bin=${1:?usage: hack/check-static.sh <binary>}
[[ -f "$bin" ]] || { echo "check-static: $bin does not exist" >&2; exit 1; }
if ! readelf -h "$bin" >/dev/null 2>&1; then
  echo "check-static: $bin is not an ELF file" >&2; exit 1
fi
if readelf -lW "$bin" | grep -q 'Requesting program interpreter\|INTERP'; then
  echo "check-static: $bin has a program interpreter (dynamically linked):" >&2
  readelf -lW "$bin" | grep -A1 INTERP >&2
  exit 1
fi
needed=$(readelf -dW "$bin" 2>/dev/null | grep '(NEEDED)' || true)
if [[ -n "$needed" ]]; then
  echo "check-static: $bin needs shared libraries:" >&2
  echo "$needed" >&2
  exit 1
fi
# The shipped binary has no crash injection (a test-only build feature, `crash-points`): the
# environment variable that drives it must not even be named in it.
if grep -aq ETCD_OPERATOR_CRASH_AT "$bin"; then
  echo "check-static: $bin has crash points (built with the crash-points feature?)" >&2
  exit 1
fi
echo "check-static: $bin is statically linked, without crash points ($(stat -c %s "$bin") bytes)"
