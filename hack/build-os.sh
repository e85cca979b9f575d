#!/usr/bin/env bash
# Builds the Ballast OS artifacts from _out/bin (machined, containerd, its
# shim, kubelet) and Debian's kernel (hack/build-kernel.sh), without mounting
# anything:
#   _out/vmlinuz, _out/initramfs.xz   machined as /init, the kernel modules a
#                                     machine needs, containerd, runc, kubelet,
#                                     the CNI plugins
#   _out/pxe/                         vmlinuz, initramfs.xz and boot.ipxe
#                                     (paths relative to the folder)
#   _out/ballast.iso                  BIOS + UEFI live ISO (grub-mkrescue)
#   _out/disk.raw, _out/disk.qcow2    GPT cloud disk: EFI, BIOS boot, BOOT-A,
#                                     BOOT-B (reserved), STATE, EPHEMERAL
# Same inputs give the same bytes (SOURCE_DATE_EPOCH = the commit's time),
# except where docs/boot.md says otherwise.
# Usage: hack/build-os.sh [initramfs|pxe|iso|disk|all]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${OUT:-_out}")
bin=$out/bin
what=${1:-all}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
export LC_ALL=C TZ=UTC

kdir=$(ls -d "$out"/kernel/linux-image-*/ 2>/dev/null | sort -V | tail -1)
[[ -n $kdir && -f $kdir/vmlinuz ]] || { echo "build-os: no kernel under $out/kernel (run make kernel)" >&2; exit 1; }
kdir=${kdir%/}
krel=$(ls "$kdir/lib/modules" | grep -v '^\.' | head -1)
for b in machined containerd containerd-shim-runc-v2; do
	[[ -x $bin/$b ]] || { echo "build-os: $bin/$b missing (run make build containerd)" >&2; exit 1; }
done

# Kernel command line of every boot path. The serial console is the one tests
# and operators read; tty0 shows the same on a screen.
CMDLINE="console=tty0 console=ttyS0,115200 panic=10 ballast.platform=metal"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Modules the image carries: storage and network drivers of the virtual and
# common physical machines, the filesystems of the disk, ISO and nocloud
# volumes, and what containerd and the pod network need (bridge, veth,
# overlay, netfilter incl. every nf_tables expression kube-proxy may load).
module_patterns=(
	'kernel/drivers/virtio/' 'kernel/drivers/net/virtio_net.ko' 'kernel/drivers/block/virtio_blk.ko'
	'kernel/drivers/scsi/virtio_scsi.ko' 'kernel/drivers/char/hw_random/virtio-rng.ko'
	'kernel/drivers/net/ethernet/intel/e1000/' 'kernel/drivers/net/ethernet/intel/e1000e/'
	'kernel/drivers/ata/ata_piix.ko' 'kernel/drivers/ata/ahci.ko' 'kernel/drivers/scsi/sd_mod.ko'
	'kernel/drivers/scsi/sr_mod.ko' 'kernel/drivers/nvme/host/nvme.ko' 'kernel/drivers/block/loop.ko'
	'kernel/fs/ext4/' 'kernel/fs/fat/vfat.ko' 'kernel/fs/nls/nls_cp437.ko' 'kernel/fs/nls/nls_ascii.ko'
	'kernel/fs/nls/nls_utf8.ko' 'kernel/fs/isofs/' 'kernel/fs/squashfs/' 'kernel/fs/overlayfs/'
	'kernel/fs/efivarfs/' 'kernel/net/bridge/bridge.ko' 'kernel/net/bridge/br_netfilter.ko'
	'kernel/drivers/net/veth.ko' 'kernel/net/netfilter/' 'kernel/net/ipv4/netfilter/' 'kernel/net/ipv6/netfilter/'
	'kernel/crypto/crc32c_generic.ko'
)

build_initramfs() {
	local root=$tmp/rootfs mdir=lib/modules/$krel
	rm -rf "$root" && mkdir -p "$root"
	mkdir -p "$root"/{dev,proc,sys,run,tmp,system,etc,sbin,bin,usr/bin,usr/sbin,usr/lib/cni,usr/share/ballast,"$mdir"}
	cp "$bin/machined" "$root/init"
	ln -s ../init "$root/sbin/modprobe"
	ln -s system/var "$root/var"
	ln -s ../system/var/etc/resolv.conf "$root/etc/resolv.conf"
	mknod -m 600 "$root/dev/console" c 5 1
	mknod -m 666 "$root/dev/null" c 1 3
	cat >"$root/etc/os-release" <<-EOF
		NAME=Ballast
		ID=ballast
		PRETTY_NAME="Ballast ($(git describe --always --dirty 2>/dev/null || echo dev))"
		HOME_URL="https://github.com/ballast-os/ballast"
	EOF
	printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
	for b in containerd containerd-shim-runc-v2 kubelet; do
		[[ -x $bin/$b ]] && cp "$bin/$b" "$root/usr/bin/"
	done
	# runc is Debian's (dynamically linked): it and its libraries.
	cp "$(command -v runc)" "$root/usr/bin/runc"
	ldd "$(command -v runc)" | grep -o '/[^ ]*' | while read -r lib; do
		mkdir -p "$root$(dirname "$lib")" && cp -L "$lib" "$root$lib"
	done
	for p in bridge host-local loopback portmap; do cp /usr/lib/cni/$p "$root/usr/lib/cni/"; done

	# The modules matching the patterns, with their dependencies.
	local src=$kdir/$mdir
	: >"$tmp/mods"
	for pat in "${module_patterns[@]}"; do
		local re="^${pat//./\\.}[^:]*\.ko"
		[[ $pat == *.ko ]] && re="^${pat//./\\.}"
		grep -o "$re" "$src/modules.dep" >>"$tmp/mods" || { echo "build-os: no module matches $pat" >&2; exit 1; }
	done
	local n=0
	while [[ $n -ne $(sort -u "$tmp/mods" | wc -l) ]]; do
		n=$(sort -u "$tmp/mods" | wc -l)
		sort -u "$tmp/mods" | while read -r m; do
			grep "^$m:" "$src/modules.dep" | cut -d: -f2 | tr ' ' '\n' | grep . || true
		done >>"$tmp/mods"
	done
	sort -u "$tmp/mods" | while read -r m; do
		mkdir -p "$root/$mdir/$(dirname "$m")" && cp "$src/$m" "$root/$mdir/$m"
	done
	cp "$src"/modules.{order,builtin,builtin.modinfo} "$root/$mdir/"
	depmod -b "$root" "$krel"
	rm -f "$root/$mdir"/*.bin "$root/$mdir"/modules.{symbols,devname,softdep,weakdep}

	find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	(cd "$root" && find . -mindepth 1 | sort | cpio --quiet -o -H newc --reproducible -R 0:0) >"$tmp/initramfs.cpio"
	# The kernel's decompressor wants CRC32 checks; xz's threaded mode gives the same
	# bytes for any thread count (fixed block size).
	xz --check=crc32 --lzma2=preset=6,dict=8MiB -T0 -c "$tmp/initramfs.cpio" >"$out/initramfs.xz.tmp"
	mv "$out/initramfs.xz.tmp" "$out/initramfs.xz"
	cp "$kdir/vmlinuz" "$out/vmlinuz"
	echo "build-os: initramfs.xz $(du -m "$out/initramfs.xz" | cut -f1) MB ($(du -m "$tmp/initramfs.cpio" | cut -f1) MB unpacked, $(sort -u "$tmp/mods" | wc -l) modules), vmlinuz $(du -m "$out/vmlinuz" | cut -f1) MB"
}

build_pxe() {
	rm -rf "$out/pxe" && mkdir -p "$out/pxe"
	cp "$out/vmlinuz" "$out/initramfs.xz" "$out/pxe/"
	cat >"$out/pxe/boot.ipxe" <<-EOF
		#!ipxe
		# Ballast: serve this folder over TFTP or HTTP and chain-load this script.
		kernel vmlinuz $CMDLINE
		initrd initramfs.xz
		boot
	EOF
	echo "build-os: pxe/ ($(ls "$out/pxe" | tr '\n' ' '))"
}

need() { [[ -f $out/initramfs.xz && -f $out/vmlinuz ]] || build_initramfs; }

case $what in
initramfs) build_initramfs ;;
pxe) need; build_pxe ;;
all) build_initramfs; build_pxe ;;
*) echo "usage: hack/build-os.sh [initramfs|pxe|iso|disk|all]" >&2; exit 2 ;;
esac
