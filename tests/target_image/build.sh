#!/usr/bin/env bash
# Build the disposable systemd test target: a Debian 12 (or 13) image whose
# PID 1 is systemd, made from Debian packages with debootstrap because no
# container image registry is reachable from the machines this project is
# tested on.
#
# Usage: build.sh [--print-ref]
#   Prints the image reference as the last line of stdout (progress goes to
#   stderr). The tag carries a short hash of this script and of the mirrors
#   it resolved, so a rebuild happens only when the recipe changes; an image
#   that already exists is reused. --print-ref prints the reference without
#   building (no root, no podman needed).
#
# Environment:
#   CCQ_TARGET_SUITE            bookworm (Debian 12, default) or trixie (Debian 13)
#   CCQ_TARGET_MIRROR           Debian mirror (default: from the host's apt sources)
#   CCQ_TARGET_SECURITY_MIRROR  Debian security mirror (default: likewise)
#   CCQ_TARGET_IMAGE_NAME       image name (default: localhost/ccq-target)
#
# Host prerequisites: tests/target_image/install-host-deps.sh (as root).
set -euo pipefail

# The Debian releases ccq supports as targets, by suite name.
declare -rA DEBIAN_RELEASES=([bookworm]=12 [trixie]=13)
readonly SUITE=${CCQ_TARGET_SUITE:-bookworm}
[[ -n ${DEBIAN_RELEASES[$SUITE]:-} ]] \
  || { echo "build.sh: error: CCQ_TARGET_SUITE=$SUITE: use one of ${!DEBIAN_RELEASES[*]}" >&2; exit 1; }
readonly IMAGE_NAME=${CCQ_TARGET_IMAGE_NAME:-localhost/ccq-target}
readonly DEFAULT_MIRROR=http://deb.debian.org/debian
readonly DEFAULT_SECURITY_MIRROR=http://deb.debian.org/debian-security

# What Ansible needs on a target (python3, python3-apt for the apt module,
# sudo for become) plus a real systemd with logind and a user bus, so that
# `loginctl enable-linger` and `systemctl --user` behave as on a Debian host.
# Nothing the roles install themselves (nodejs, npm, python3-venv, the extra
# CA certificates) belongs here: the image must show whether the roles work.
readonly PACKAGES=(
  systemd systemd-sysv dbus dbus-user-session libpam-systemd
  python3 python3-apt sudo
  curl ca-certificates iproute2 procps locales
  # Not ccq's: the terminal-UI test types into Claude Code through tmux, as a person would.
  tmux
  # Not ccq's: Molecule converges over SSH, as a team reaches its laptops (issue 25). SSH
  # pipelines a task into one round trip; the podman connection cannot pipeline and costs
  # about 1 s of podman exec calls per task. molecule/shared/prepare.yml starts sshd.
  openssh-server
)

# Units that have no business in a container: gettys would spin on a missing
# console and udev cannot manage devices it does not own.
readonly MASKED_UNITS=(
  getty.target getty-static.service getty@.service serial-getty@.service
  console-getty.service container-getty@.service
  systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket
  systemd-udev-trigger.service systemd-udev-settle.service
)

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
readonly SCRIPT_PATH

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Print "URI<TAB>SUITE" for every enabled `deb` entry of the host's apt
# sources, one-line (.list) and deb822 (.sources) formats alike.
host_apt_entries() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -r $f ]] || continue
    awk '
      /^[[:space:]]*deb[[:space:]]/ {
        i = 2
        if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }  # skip [options]
        print $i "\t" $(i + 1)
      }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -r $f ]] || continue
    awk '
      function flush(  u, s, nu, ns, a, b) {
        if (types ~ /(^|[[:space:]])deb([[:space:]]|$)/ && tolower(enabled) != "no") {
          nu = split(uris, a, /[[:space:]]+/); ns = split(suites, b, /[[:space:]]+/)
          for (u = 1; u <= nu; u++) for (s = 1; s <= ns; s++)
            if (a[u] != "" && b[s] != "") print a[u] "\t" b[s]
        }
        types = uris = suites = enabled = ""
      }
      /^[[:space:]]*$/ { flush(); next }
      /^#/ { next }
      { line = $0; sub(/^[^:]*:[[:space:]]*/, "", line); key = tolower($1) }
      key == "types:" { types = line }
      key == "uris:" { uris = line }
      key == "suites:" { suites = line }
      key == "enabled:" { enabled = line }
      END { flush() }' "$f"
  done
}

# The host mirror that serves SUITE, else the one that serves the host's own
# release (a Debian 12 host's mirror serves Debian 13 too), else the fallback.
mirror_for_suite() {
  local suite=$1 fallback=$2 uri
  uri=$(host_apt_entries | awk -F'\t' -v s="$suite" '$2 == s { print $1; exit }')
  [[ -n $uri ]] || uri=$(host_apt_entries \
    | awk -F'\t' -v security="$([[ $suite == *-security ]] && echo 1)" \
        '($2 ~ /-security$/) == (security == 1) && $2 !~ /-(updates|backports)$/ { print $1; exit }')
  printf '%s\n' "${uri:-$fallback}" | sed 's:/*$::'
}

MIRROR=${CCQ_TARGET_MIRROR:-$(mirror_for_suite "$SUITE" "$DEFAULT_MIRROR")}
SECURITY_MIRROR=${CCQ_TARGET_SECURITY_MIRROR:-$(mirror_for_suite "$SUITE-security" "$DEFAULT_SECURITY_MIRROR")}
readonly MIRROR SECURITY_MIRROR

# The tag hashes everything that shapes the image: this script (which holds
# the package list and every rootfs tweak), the mirrors written into the
# image's apt sources, and the architecture.
recipe_hash() {
  {
    cat "$SCRIPT_PATH"
    printf 'suite=%s\nmirror=%s\nsecurity=%s\narch=%s\n' "$SUITE" "$MIRROR" "$SECURITY_MIRROR" \
      "$(dpkg --print-architecture 2>/dev/null || uname -m)"
  } | sha256sum | cut -c1-12
}

IMAGE_REF="$IMAGE_NAME:debian${DEBIAN_RELEASES[$SUITE]}-$(recipe_hash)"
readonly IMAGE_REF

if [[ ${1:-} == --print-ref ]]; then
  printf '%s\n' "$IMAGE_REF"
  exit 0
elif [[ $# -gt 0 ]]; then
  die "usage: $0 [--print-ref]"
fi

for tool in podman debootstrap flock setsid tar; do
  command -v "$tool" >/dev/null \
    || die "$tool not found: run tests/target_image/install-host-deps.sh as root"
done
[[ $(id -u) -eq 0 ]] || die "debootstrap needs root"

if podman image exists "$IMAGE_REF"; then
  log "reusing $IMAGE_REF"
  printf '%s\n' "$IMAGE_REF"
  exit 0
fi

# One build at a time: two concurrent debootstraps would both spend a minute
# and race on the tag. The second waiter finds the image already built.
LOCK_FILE=${CCQ_TARGET_LOCK_FILE:-/tmp/ccq-target-image.lock}
exec {lock_fd}>"$LOCK_FILE"
log "waiting for $LOCK_FILE"
flock "$lock_fd"
if podman image exists "$IMAGE_REF"; then
  log "reusing $IMAGE_REF (built by a concurrent run)"
  printf '%s\n' "$IMAGE_REF"
  exit 0
fi

WORK_DIR=$(mktemp -d "${TMPDIR:-/var/tmp}/ccq-target.XXXXXX")
readonly WORK_DIR ROOTFS="$WORK_DIR/rootfs"

# debootstrap mounts /proc and /sys inside the rootfs and an interrupted run
# can leave them mounted: unmount everything below WORK_DIR before deleting,
# and never let rm cross into another file system (that would be the host's).
CHILD_PID=""
cleanup() {
  local mnt
  # Stop a running debootstrap (and the dpkg/wget it spawned) before its
  # rootfs is deleted under it; it runs in its own process group for this.
  if [[ -n $CHILD_PID ]]; then
    kill -TERM -- "-$CHILD_PID" 2>/dev/null || true
    wait "$CHILD_PID" 2>/dev/null || true
  fi
  while read -r mnt; do
    umount -l "$mnt" 2>/dev/null || true
  done < <(awk -v d="$WORK_DIR/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r)
  rm -rf --one-file-system "$WORK_DIR"
}
trap cleanup EXIT
# Without these traps bash would run the EXIT trap only after the foreground
# debootstrap finished; `wait` on a background child returns at once instead.
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# Run a command in its own process group (setsid) and wait for it, so that
# cleanup can signal the whole group.
run_in_group() {
  setsid "$@" &
  CHILD_PID=$!
  local rc=0
  wait "$CHILD_PID" || rc=$?
  CHILD_PID=""
  return "$rc"
}

log "debootstrap $SUITE from $MIRROR (log: $WORK_DIR/debootstrap.log)"
include=$(IFS=,; printf '%s' "${PACKAGES[*]}")
if ! run_in_group debootstrap --variant=minbase --include="$include" \
    "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK_DIR/debootstrap.log" 2>&1; then
  tail -n 30 "$WORK_DIR/debootstrap.log" >&2
  [[ -f $ROOTFS/debootstrap/debootstrap.log ]] && tail -n 30 "$ROOTFS/debootstrap/debootstrap.log" >&2
  die "debootstrap failed"
fi

log "preparing rootfs"
# The same sources a Debian host of this release has (release, updates, security), so the
# roles' apt tasks see what they would see on a real machine.
rm -f "$ROOTFS/etc/apt/sources.list"
cat >"$ROOTFS/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

# An empty machine-id makes systemd generate a fresh one at every boot, so
# two containers of this image never share an identity (journal, D-Bus).
: >"$ROOTFS/etc/machine-id"
rm -f "$ROOTFS/var/lib/dbus/machine-id"

for unit in "${MASKED_UNITS[@]}"; do
  ln -sfn /dev/null "$ROOTFS/etc/systemd/system/$unit"
done

# sshd starts only where prepare.yml gives it a port: the targets share the host's network,
# and port 22 may be the host's own sshd.
rm -f "$ROOTFS/etc/systemd/system/multi-user.target.wants/ssh.service" \
  "$ROOTFS/etc/systemd/system/sshd.service" "$ROOTFS/etc/systemd/system/sockets.target.wants/ssh.socket"

# debootstrap copies the build host's name and resolver; podman provides both.
rm -f "$ROOTFS/etc/hostname" "$ROOTFS/etc/resolv.conf"

chroot "$ROOTFS" apt-get clean
# No package lists in the image, and a lists directory dated 1970: Ansible's
# `apt: update_cache: true, cache_valid_time: N` compares against that mtime,
# and a fresh date would make it skip the refresh and then fail with
# "No package matching 'X' is available".
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS/var/lib/apt/periodic/update-success-stamp"
touch -d @0 "$ROOTFS/var/lib/apt/lists"

log "importing $IMAGE_REF"
tar --numeric-owner --xattrs --xattrs-include='*' -C "$ROOTFS" -cf - . \
  | podman import \
      --change 'CMD ["/sbin/init"]' \
      --change 'STOPSIGNAL SIGRTMIN+3' \
      --change 'LABEL org.opencontainers.image.title=ccq-target' \
      --change "LABEL org.opencontainers.image.version=${IMAGE_REF##*:}" \
      - "$IMAGE_REF" >/dev/null
log "built $IMAGE_REF"
printf '%s\n' "$IMAGE_REF"
