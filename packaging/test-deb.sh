#!/usr/bin/env bash
# `make deb-test`: the Debian package's life in a fresh Debian Bookworm root (debootstrap --variant=minbase),
# as root: install (apt takes the package's Depends from the mirror), the unit checked by systemd-analyze
# verify, the smoke test as the payg user (packaging/smoke.py), an upgrade in place to a higher version that
# keeps the journal and an edited /etc/payg/payg.toml, remove (journal and configuration kept), purge (all of
# payg's files gone), and a reinstall over the user the purge left.
#
#   packaging/test-deb.sh dist/payg_<version>_<arch>.deb
#
# The minbase root is cached as a tarball in DEB_TEST_CACHE (default /var/cache/payg-deb-test), with apt's
# downloaded packages beside it: a second run skips debootstrap and most downloads. Delete the directory to
# start cold. DEB_TEST_MIRROR picks another Debian mirror.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEB=$(realpath "${1:?usage: test-deb.sh dist/payg_<version>_<arch>.deb}")
CACHE=${DEB_TEST_CACHE:-/var/cache/payg-deb-test}
MIRROR=${DEB_TEST_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm

exec 3>&1  # the steps' times go there even when a command's output is sent to a log
started=$(date +%s%N)
elapsed() { awk -v n="$(date +%s%N)" -v s="$1" 'BEGIN { printf "%.1f", (n - s) / 1e9 }'; }
step() { printf '[%6s s] %s\n' "$(elapsed "$started")" "$*"; }
fail() { echo "deb-test FAILED: $*" >&2; exit 1; }
# `timed NAME CMD...`: runs CMD and prints how long it took.
timed() {
    local name=$1 t0
    shift
    t0=$(date +%s%N)
    "$@"
    printf '           %s: %s s\n' "$name" "$(elapsed "$t0")" >&3
}

[ "$(id -u)" = 0 ] || fail "run as root (debootstrap, chroot and mounts need it)"
arch=$(dpkg-deb --field "$DEB" Architecture)
version=$(dpkg-deb --field "$DEB" Version)
# Another architecture's package runs in its root under qemu-user, through the kernel's binfmt_misc (Debian's
# qemu-user-static registers the handlers; `make deb-test-arm64` does it): some ten times slower, so the smoke
# test waits ten times longer.
patience=1
if [ "$arch" != "$(dpkg --print-architecture)" ]; then
    case "$arch" in arm64) qemu=aarch64 ;; armhf) qemu=arm ;; *) qemu=$arch ;; esac
    grep -qx enabled "/proc/sys/fs/binfmt_misc/qemu-$qemu" 2>/dev/null \
        || fail "$DEB is for $arch: this $(dpkg --print-architecture) machine runs it only under qemu-user, with a binfmt_misc handler for $qemu (apt-get install qemu-user-static; make deb-test-arm64 registers it)"
    patience=10
fi
if ! command -v debootstrap >/dev/null; then
    step "installing debootstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
step "testing $DEB ($(du -k "$DEB" | cut -f1) KB, version $version$([ "$patience" = 1 ] || echo ", under qemu-user"))"

work=$(mktemp -d /tmp/payg-deb-test.XXXXXX)
rootfs=$work/root
cleanup() {
    # Unmount everything under the root (deepest first) before deleting it, and never cross into a mount.
    findmnt --list --noheadings --output TARGET | grep "^$rootfs/" | sort -r | xargs -r -n1 umount -l || true
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

in_root() {
    chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive "$@"
}
apt_in_root() {
    in_root apt-get -y -q -o Dpkg::Options::=--force-confold -o Dpkg::Use-Pty=0 "$@" >"$work/apt.log" 2>&1 \
        || { tail -40 "$work/apt.log" >&2; fail "apt-get $*"; }
}
check() {  # check DESCRIPTION TEST...: the test must hold
    local what=$1
    shift
    "$@" || fail "$what"
    echo "  ok $what"
}
quiet() { "$@" >/dev/null 2>&1; }
absent() { [ ! -e "$rootfs$1" ] && [ ! -L "$rootfs$1" ]; }
mode_owner() {
    local got
    got=$(in_root stat -c '%a %U:%G' "$1")  # names from the root's own /etc/passwd
    [ "$got" = "$2" ] || { echo "  $1: $got, expected $2" >&2; return 1; }
}

# 1. A fresh minbase root, from the cache when there is one.
mkdir -p "$CACHE/apt-archives/partial"
tarball=$CACHE/$SUITE-minbase-$arch.tar.gz
if [ ! -f "$tarball" ]; then
    step "debootstrap --variant=minbase $SUITE from $MIRROR (not cached yet: $tarball)"
    timed debootstrap debootstrap --variant=minbase --arch="$arch" "$SUITE" "$work/bootstrap" "$MIRROR" \
        >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap"; }
    tar -C "$work/bootstrap" -czf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf --one-file-system "$work/bootstrap"
fi
step "unpacking the root from $tarball"
mkdir "$rootfs"
tar -C "$rootfs" -xzf "$tarball"
mount -t proc proc "$rootfs/proc"
mount --bind "$CACHE/apt-archives" "$rootfs/var/cache/apt/archives"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
[ ! -e "$rootfs/run/systemd/system" ] || fail "the root looks booted with systemd: the chroot case is not tested"
timed "apt-get update" apt_in_root update

# 2. Install.
cp "$DEB" "$rootfs/tmp/payg.deb"
cp "$ROOT/packaging/smoke.py" "$rootfs/tmp/smoke.py"
step "installing $(basename "$DEB") and its Depends with apt"
timed install apt_in_root install /tmp/payg.deb
check "the package is installed" grep -q "^Status: install ok installed" <(in_root dpkg -s payg)
groups=$(in_root id -Gn payg)
check "payg is in the gpio and dialout groups ($groups)" \
    test "$(tr ' ' '\n' <<< "$groups" | grep -cxE 'gpio|dialout')" = 2
check "the payg user has no login shell" grep -q ':/usr/sbin/nologin$' <(in_root getent passwd payg)
check "/var/lib/payg is payg's, mode 0700" mode_owner /var/lib/payg "700 payg:payg"
check "/etc/payg/payg.toml is readable by payg only" mode_owner /etc/payg/payg.toml "640 root:payg"
check "/etc/payg/payg.toml is a conffile" grep -q "/etc/payg/payg.toml" <(in_root dpkg-query -W -f '${Conffiles}' payg)
check "/usr/bin/payg runs the venv's payg" quiet in_root /usr/bin/payg --help
check "the venv uses Debian's python3" grep -q "^home = /usr/bin" "$rootfs/opt/payg/pyvenv.cfg"
echo "  (the venv in /opt/payg: $(du -sm "$rootfs/opt/payg" | cut -f1) MB)"
check "the unit is enabled (multi-user.target.wants)" \
    test -L "$rootfs/etc/systemd/system/multi-user.target.wants/payg.service"
check "the unit runs /opt/payg/bin/payg with its watchdog" \
    grep -q "^ExecStart=/opt/payg/bin/payg run --config /etc/payg/payg.toml" "$rootfs/lib/systemd/system/payg.service"
check "the unit keeps WatchdogSec and ExecStopPost" test "$(grep -cE \
    -e '^WatchdogSec=10$' -e '^ExecStopPost=/opt/payg/bin/payg relay off' "$rootfs/lib/systemd/system/payg.service")" = 2

# 3. The unit, as the target's systemd reads it. minbase has no systemd: it is installed for this check only (not
# started: the root is not booted), so that verify finds the targets the unit names and checks that ExecStart and
# ExecStopPost exist in the root.
step "systemd-analyze verify of the installed unit (with the root's own systemd)"
timed "apt-get install systemd" apt_in_root install --no-install-recommends systemd
in_root systemd-analyze verify /lib/systemd/system/payg.service >"$work/verify.log" 2>&1 \
    || { cat "$work/verify.log" >&2; fail "systemd-analyze verify"; }
[ ! -s "$work/verify.log" ] || { cat "$work/verify.log" >&2; fail "systemd-analyze verify printed warnings"; }
echo "  ok systemd-analyze verify: no errors or warnings"

# 4. The smoke test, as the service runs: the payg user, its UMask, the installed configuration (a free port).
step "smoke test as the payg user: /healthz, pages, a mock deposit, SIGTERM"
timed smoke in_root sh -c 'umask 077 && exec runuser -u payg -- "$@"' as-the-unit python3 /tmp/smoke.py --payg /usr/bin/payg --config /etc/payg/payg.toml \
    --socket socket1 --patience "$patience" || fail "the smoke test"
check "the journal is in /var/lib/payg, payg's" mode_owner /var/lib/payg/journal.sqlite "600 payg:payg"

# 5. Upgrade in place to a higher version whose own payg.toml changed too: dpkg keeps the administrator's edit.
step "upgrading to $version+upgrade (the same package, a higher version, its payg.toml changed)"
dpkg-deb --raw-extract "$DEB" "$work/v2"
sed -i "s/^Version: .*/Version: $version+upgrade/" "$work/v2/DEBIAN/control"
echo "# a line the new version added" >> "$work/v2/etc/payg/payg.toml"
(cd "$work/v2" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
    > "$work/v2/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zgzip --build "$work/v2" "$rootfs/tmp/payg-upgrade.deb" >/dev/null
sed -i 's/^name = "Socket 1"$/name = "Kitchen"/' "$rootfs/etc/payg/payg.toml"
config_sum=$(sha256sum < "$rootfs/etc/payg/payg.toml")
journal_sum=$(sha256sum < "$rootfs/var/lib/payg/journal.sqlite")
timed upgrade apt_in_root install /tmp/payg-upgrade.deb
check "the upgraded version is installed" grep -q "^Version: $version+upgrade$" <(in_root dpkg -s payg)
check "the edited payg.toml is kept" test "$(sha256sum < "$rootfs/etc/payg/payg.toml")" = "$config_sum"
check "the new version's payg.toml is beside it as payg.toml.dpkg-dist" test -f "$rootfs/etc/payg/payg.toml.dpkg-dist"
check "the journal is kept, unchanged" test "$(sha256sum < "$rootfs/var/lib/payg/journal.sqlite")" = "$journal_sum"
check "the venv was made anew and runs" quiet in_root /opt/payg/bin/payg --help
step "smoke test of the upgraded package, on the kept journal"
timed smoke in_root sh -c 'umask 077 && exec runuser -u payg -- "$@"' as-the-unit python3 /tmp/smoke.py --payg /usr/bin/payg --config /etc/payg/payg.toml \
    --socket socket1 --patience "$patience" --name Kitchen || fail "the smoke test after the upgrade (with the edited payg.toml)"

# 6. Remove: the program goes, the journal and the configuration stay.
step "apt-get remove payg"
timed remove apt_in_root remove payg
check "dpkg keeps payg's configuration (state rc)" grep -q "^Status: deinstall ok config-files" <(in_root dpkg -s payg)
check "/opt/payg is gone" absent /opt/payg
check "/usr/bin/payg is gone" absent /usr/bin/payg
check "the unit file is gone" absent /lib/systemd/system/payg.service
check "the edited payg.toml is kept" test "$(sha256sum < "$rootfs/etc/payg/payg.toml")" = "$config_sum"
check "the journal is kept" test -f "$rootfs/var/lib/payg/journal.sqlite"

# 7. Purge: everything of payg's goes, except the system user (see packaging/debian/postrm).
step "apt-get purge payg"
timed purge apt_in_root purge payg
check "dpkg has nothing of payg's left" grep -qvE 'installed|config-files' \
    <<< "$(in_root dpkg-query -W -f '${Status}' payg 2>/dev/null | sed 's/not-installed/none/')"
for path in /etc/payg /var/lib/payg /opt/payg /etc/systemd/system/multi-user.target.wants/payg.service \
    /etc/systemd/system/payg.service /var/lib/systemd/deb-systemd-helper-enabled/payg.service \
    /var/lib/systemd/deb-systemd-helper-masked/payg.service; do
    check "$path is gone" absent "$path"
done
check "the payg user is left (Debian's practice for system users)" quiet in_root getent passwd payg

# 8. A reinstall over the user that the purge left, with a fresh configuration.
step "installing again after the purge"
timed reinstall apt_in_root install /tmp/payg.deb
check "the package's own payg.toml is back" cmp -s "$rootfs/etc/payg/payg.toml" <(dpkg-deb --fsys-tarfile "$DEB" \
    | tar -xOf - ./etc/payg/payg.toml)
check "the venv runs" quiet in_root /usr/bin/payg --help

step "all passed: install, verify, smoke, upgrade, remove, purge, reinstall ($(du -k "$DEB" | cut -f1) KB .deb)"
