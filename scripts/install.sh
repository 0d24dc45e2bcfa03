#!/usr/bin/env bash
# Installs what dsrlab needs and is missing; safe to run again (idempotent).
#   - Debian packages: kernel-side tools (iproute2, clang/llvm, libbpf, bpftool),
#     capture tools (tcpdump, tshark), curl, nsenter (util-linux), Python venv.
#   - A virtualenv in .venv with dsrlab and its dev extras, re-installed only
#     when pyproject.toml changed.
# Needs root for apt (the lab itself needs root too: namespaces and BPF).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  iproute2 util-linux clang llvm libbpf-dev bpftool linux-libc-dev
  tcpdump tshark curl ca-certificates python3 python3-venv python3-pip
  chromium chromium-driver
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install: missing Debian packages (${missing[*]}); run as root" >&2
    exit 1
  fi
  echo "install: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "install: $PYTHON is $("$PYTHON" --version 2>&1); dsrlab needs Python >= 3.11" >&2
  exit 1
fi

stamp=.venv/.dsrlab-install-stamp
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -x .venv/bin/python ]]; then
  echo "install: creating .venv"
  "$PYTHON" -m venv .venv
fi
# pip, three tries: a download cut short (a flaky mirror) is not a failed install
pip_install() {
  local try
  for try in 1 2 3; do
    if .venv/bin/python -m pip install -q --disable-pip-version-check "$@"; then return 0; fi
    echo "install: pip install $* failed (try $try of 3)" >&2
    sleep $((try * 5))
  done
  return 1
}
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "install: pip install -e .[dev]"
  pip_install -U pip
  pip_install -e '.[dev]'
  echo "$want" > "$stamp"
fi
