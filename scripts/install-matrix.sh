#!/usr/bin/env bash
# Installs what `dsrlab matrix` needs and is missing; safe to run again (idempotent).
# Only the matrix needs it (make matrix runs it; make install / make demo do not):
#   - Debian packages: QEMU (qemu-system-x86), udev and kmod (virtme-ng asks for
#     them), a static busybox (virtme-ng's initramfs for kernels whose 9p is a module).
#   - The kernels of kernels/matrix.yaml: the newest package of each line apt
#     offers (python -m lab.matrix packages resolves them), generic -amd64 flavour;
#     only the named ones when kernel names are given (install-matrix.sh 6.1).
#     A line with a suite (5.10 from bullseye) adds that suite's apt source, pinned
#     to the kernel's package alone (python -m lab.matrix apt-sources).
#   - virtme-ng 1.42 in the project venv (the `matrix` extra of pyproject.toml).
# Needs root for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh

if [[ $(id -u) -ne 0 ]]; then
  echo "install-matrix: needs root (apt, and the matrix boots kernels as root)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

ARGS=()
for name in "$@"; do ARGS+=(--kernel "$name"); done

# a kernel line with a suite (5.10: bullseye): that suite's apt source, pinned so
# that only the kernel's package comes from it (dsrlab-<suite> files, written only
# when a selected kernel needs them and their content changed; "update" when apt
# must read them or the suite's lists are missing)
UPDATE=$(.venv/bin/python -m lab.matrix apt-sources "${ARGS[@]}")  # fails on an unknown name

# the package lists: apt-cache resolves the kernels from them
if [[ -n $UPDATE ]] ||
  [[ -z $(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null) ]]; then
  echo "install-matrix: apt-get update"
  apt-get update -qq
fi

PACKAGES=$(.venv/bin/python -m lab.matrix packages "${ARGS[@]}")  # fails on an unknown name
read -r -a KERNELS <<<"$(echo $PACKAGES)"
APT_PACKAGES=(qemu-system-x86 udev kmod busybox-static "${KERNELS[@]}")
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  installed "$pkg" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "install-matrix: apt-get install ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -x .venv/bin/vng ]] || [[ $(.venv/bin/vng --version 2>/dev/null) != "virtme-ng 1.42" ]]; then
  echo "install-matrix: pip install virtme-ng==1.42 (the matrix extra)"
  for try in 1 2 3; do  # a download cut short is not a failed install
    .venv/bin/python -m pip install -q --disable-pip-version-check 'virtme-ng==1.42' && break
    [[ $try == 3 ]] && exit 1
    sleep $((try * 5))
  done
fi
echo "install-matrix: kernels ${KERNELS[*]}"
