#!/usr/bin/env bash
# Builds payg_<version>_<arch>.deb with dpkg-deb (`make deb`; docs/operations/debian-package.md).
#
# The package carries the payg wheel and a wheelhouse of every dependency as a wheel for the target
# (CPython 3.11, glibc 2.36: Debian Bookworm and Raspberry Pi OS); its postinst makes the venv in /opt/payg
# offline from them. payg itself is pure Python, so any machine builds any architecture's package: only the
# wheels of the compiled dependencies differ, and pip downloads those for the target's platform.
#
# Settings (environment): ARCH (amd64, arm64; default: this machine's), DEB_VERSION (default: pyproject's
# version), DEB_EXTRAS (payg's extras to include, comma-separated, e.g. "mqtt"), OUT (default: dist),
# WHEEL (a payg wheel to package instead of building one), PYTHON (the build's Python, default .venv/bin/python),
# DEB_PYTHON (the target's Python, default 3.11), DEB_MAINTAINER.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
ARCH=${ARCH:-$(dpkg --print-architecture)}
DEB_PYTHON=${DEB_PYTHON:-3.11}
DEB_EXTRAS=${DEB_EXTRAS:-}
DEB_MAINTAINER=${DEB_MAINTAINER:-payg developers <payg@example.org>}
OUT=${OUT:-$ROOT/dist}
GLIBC_MINOR=36  # Bookworm's glibc 2.36: wheels for manylinux_2_36 and every older manylinux fit

case "$ARCH" in
    amd64) machine=x86_64 ;;
    arm64) machine=aarch64 ;;
    armhf) machine=armv7l ;;  # PyPI has no armv7l wheel of PyYAML (for apprise): pip stops and says so
    *) echo "build-deb: ARCH=$ARCH: expected amd64, arm64 or armhf" >&2; exit 2 ;;
esac

started=$(date +%s%N)
step() { printf '[%6s s] %s\n' "$(awk -v n="$(date +%s%N)" -v s="$started" 'BEGIN { printf "%.1f", (n - s) / 1e9 }')" "$*"; }

version=$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$ROOT/pyproject.toml")
DEB_VERSION=${DEB_VERSION:-$version}
work=$(mktemp -d /tmp/payg-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT

if [ -z "${WHEEL:-}" ]; then
    step "building the payg wheel"
    "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$work/wheel" "$ROOT"
    WHEEL=$(ls "$work"/wheel/payg-"$version"-*.whl)
fi
case "$WHEEL" in
    *-none-any.whl) ;;
    *) echo "build-deb: $WHEEL is not pure Python: its compiled part would be for this machine only" >&2; exit 1 ;;
esac
# The pages' browser libraries come from npm (make assets): a wheel built without them serves pages with no
# live updates, so it is refused here rather than shipped.
listing=$("$PYTHON" -m zipfile -l "$WHEEL")
for asset in socket.io.min.js uPlot.iife.min.js uPlot.min.css; do
    if ! grep -q "data/share/payg/assets/$asset" <<< "$listing"; then
        echo "build-deb: $WHEEL lacks share/payg/assets/$asset: run \`make assets\` before building it" >&2
        exit 1
    fi
done

requirement="payg${DEB_EXTRAS:+[$DEB_EXTRAS]}==$version"
wheels=$work/root/usr/lib/payg/wheels
mkdir -p "$wheels"
cp "$WHEEL" "$wheels/"

# Pass 1, for this machine: dependencies published only as source (siphash, which openpaygo needs) become
# wheels here. A pure-Python one (*-none-any) fits every target; a compiled one would not, and is left out, so
# that pass 2 fails naming it.
step "resolving the dependencies of $requirement (pure-Python ones published only as source become wheels)"
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check -w "$work/host" --find-links "$wheels" "$requirement"
find "$work/host" -name '*.whl' ! -name '*-none-any.whl' -delete
find "$work/host" -name '*.whl' ! -name 'payg-*' -exec cp {} "$wheels/" \;

# Pass 2, for the target: every compiled dependency as a wheel for CPython $DEB_PYTHON on $machine.
step "downloading the wheels for CPython $DEB_PYTHON on $machine (glibc 2.$GLIBC_MINOR)"
platforms=()
for minor in $(seq "$GLIBC_MINOR" -1 17); do platforms+=(--platform "manylinux_2_${minor}_$machine"); done
platforms+=(--platform "manylinux2014_$machine" --platform "manylinux2010_$machine" --platform "manylinux1_$machine")
pyver=${DEB_PYTHON//./}
"$PYTHON" -m pip download --quiet --disable-pip-version-check --only-binary=:all: "${platforms[@]}" \
    --python-version "$DEB_PYTHON" --implementation cp --abi "cp$pyver" --find-links "$wheels" -d "$wheels" \
    "$requirement"
echo "$requirement" > "$work/root/usr/lib/payg/requirement"

step "assembling the package tree"
stage=$work/root
install -d -m 0755 "$stage/DEBIAN" "$stage/etc/payg" "$stage/lib/systemd/system" "$stage/usr/bin" \
    "$stage/usr/share/doc/payg"
install -m 0644 "$ROOT/packaging/payg.toml" "$stage/etc/payg/payg.toml"
# The unit is deploy/payg.service with the venv at /opt/payg (not /opt/payg/.venv); its watchdog, relay-off and
# hardening lines are kept as they are.
{
    echo "# payg controller as a systemd service, installed by the payg package. Change it with"
    echo "# \`systemctl edit payg\` (an upgrade replaces this file). What each line does: deploy/README.md."
    grep -v '^# payg controller as a systemd service' "$ROOT/deploy/payg.service" | sed 's#/opt/payg/\.venv/#/opt/payg/#g'
} > "$stage/lib/systemd/system/payg.service"
chmod 0644 "$stage/lib/systemd/system/payg.service"
if grep -q '\.venv' "$stage/lib/systemd/system/payg.service"; then
    echo "build-deb: the unit still names a .venv path: deploy/payg.service changed its paths" >&2
    exit 1
fi
ln -s /opt/payg/bin/payg "$stage/usr/bin/payg"
install -m 0644 "$ROOT/packaging/debian/copyright" "$stage/usr/share/doc/payg/copyright"
when=$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)}")
printf 'payg (%s) stable; urgency=medium\n\n  * Built from the payg source tree: its CHANGELOG.md says what changed.\n\n -- %s  %s\n' \
    "$DEB_VERSION" "$DEB_MAINTAINER" "$when" | gzip -9n > "$stage/usr/share/doc/payg/changelog.gz"
chmod 0644 "$stage/usr/share/doc/payg/changelog.gz" "$wheels"/*.whl "$stage/usr/lib/payg/requirement"

for script in postinst prerm postrm; do
    install -m 0755 "$ROOT/packaging/debian/$script" "$stage/DEBIAN/$script"
done
echo /etc/payg/payg.toml > "$stage/DEBIAN/conffiles"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
    > "$stage/DEBIAN/md5sums"
installed_kb=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
python_next="${DEB_PYTHON%.*}.$(( ${DEB_PYTHON#*.} + 1 ))"
sed -e "s/@VERSION@/$DEB_VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@MAINTAINER@/$DEB_MAINTAINER/" \
    -e "s/@INSTALLED_SIZE@/$installed_kb/" -e "s/@PYTHON@/$DEB_PYTHON/" -e "s/@PYTHON_NEXT@/$python_next/" \
    "$ROOT/packaging/debian/control.in" > "$stage/DEBIAN/control"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"

mkdir -p "$OUT"
deb=$OUT/payg_${DEB_VERSION}_${ARCH}.deb
step "dpkg-deb --build (gzip: the wheels inside are zip files already, xz saved 0.2 % in 38 s)"
dpkg-deb --root-owner-group -Zgzip --build "$stage" "$deb" >/dev/null
step "built $deb: $(du -k "$deb" | cut -f1) KB, $(ls "$wheels" | wc -l) wheels, installed size $installed_kb KB"
