#!/usr/bin/env bash
# Install, on a Debian 12 host, what the disposable systemd test target needs:
# podman to run it, runc because crun refuses cgroup v1 "hybrid" hosts, and
# debootstrap to build the base image from Debian packages (no image registry
# is reachable, so nothing can be pulled).
#
# Idempotent: when every package is already installed it exits without
# touching apt (no `apt-get update`), so callers may run it on every build.
# Must run as root.
set -euo pipefail

PACKAGES=(
  podman          # runs the target container (Debian 12 ships 4.3)
  runc            # crun: "cgroups in hybrid mode not supported"
  debootstrap     # builds the Debian 12 rootfs the image is imported from
  debian-archive-keyring  # debootstrap verifies the mirror's Release file with it
  uidmap          # newuidmap/newgidmap: podman warns and rootless use fails without them
  slirp4netns     # podman's default rootless network helper (Recommends, pinned here)
  fuse-overlayfs  # overlay storage where the kernel overlay driver is unusable
  tar             # packs the rootfs for `podman import`
  coreutils       # sha256sum for the image tag
  util-linux      # flock and setsid for the build lock and cleanup
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  # dpkg -s alone reports "deinstall ok config-files" packages as present;
  # check the status field so a removed package is reinstalled.
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-host-deps: all present (${PACKAGES[*]})"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "install-host-deps: missing ${missing[*]}; run as root" >&2
  exit 1
fi

echo "install-host-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
