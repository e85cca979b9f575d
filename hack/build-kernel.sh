#!/usr/bin/env bash
# Fetches Debian's kernel for the OS image (the package linux-image-amd64
# points at; downloaded with apt, unpacked, never installed) into
# _out/kernel/<package-version>/: vmlinuz and lib/modules/<release>/ with
# the module index (depmod) machined's module loader reads. A kernel already
# unpacked for that version is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-_out}/kernel
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1)
[[ -n $pkg ]] || { echo "build-kernel: apt knows no linux-image-amd64 (apt-get update?)" >&2; exit 1; }
ver=$(apt-cache show "$pkg" | sed -n 's/^Version: //p' | head -1)
dst=$out/$pkg-$ver
if [[ -f $dst/vmlinuz && -f $dst/lib/modules/.done ]]; then
	echo "build-kernel: $pkg $ver cached"
	exit 0
fi
command -v depmod >/dev/null || { echo "build-kernel: depmod missing (hack/install-deps.sh image)" >&2; exit 1; }
start=$SECONDS
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download "$pkg=$ver" >/dev/null)
dpkg-deb -x "$tmp"/*.deb "$tmp/root"
rel=$(ls "$tmp/root/lib/modules")
rm -rf "$dst" && mkdir -p "$dst/lib/modules"
cp "$tmp/root/boot/vmlinuz-$rel" "$dst/vmlinuz"
mv "$tmp/root/lib/modules/$rel" "$dst/lib/modules/$rel"
depmod -b "$dst" "$rel"
touch "$dst/lib/modules/.done"
echo "build-kernel: $pkg $ver ($rel) in $((SECONDS - start)) s: $(du -sh "$dst/vmlinuz" | cut -f1) kernel, $(du -sh "$dst/lib/modules" | cut -f1) modules"
