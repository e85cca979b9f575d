#!/usr/bin/env bash
# Builds the Ballast OS artifacts from _out/bin (machined, containerd, its
# shim, kubelet) and Debian's kernel (hack/build-kernel.sh), without mounting
# anything:
#   _out/vmlinuz, _out/initramfs.xz   machined as /init, the kernel modules a
#                                     machine needs, containerd, runc, kubelet,
#                                     mount/umount,
#                                     the CNI plugins
#   _out/pxe/                         vmlinuz, initramfs.xz and boot.ipxe
#                                     (paths relative to the folder)
#   _out/ballast.iso                  BIOS + UEFI live ISO (grub-mkrescue)
#   _out/disk.raw, _out/disk.qcow2    GPT cloud disk: EFI, BIOS boot, BOOT-A,
#                                     BOOT-B (reserved), STATE, EPHEMERAL
# Same inputs give the same bytes (SOURCE_DATE_EPOCH = the commit's time),
# except where docs/boot.md says otherwise.
#   _out/images.cpio                  the Kubernetes component images as a
#                                     second initrd (when make container-images
#                                     built them)
# Usage: hack/build-os.sh [initramfs|images|pxe|iso|disk|all]
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
	# The kubelet reads the user database (user-namespace mappings); there
	# is one user. The machine ID lives on STATE (PID 1 writes it).
	echo 'root:x:0:0:root:/:/sbin/nologin' >"$root/etc/passwd"
	echo 'root:x:0:' >"$root/etc/group"
	ln -s ../system/state/machine-id "$root/etc/machine-id"
	for b in containerd containerd-shim-runc-v2 kubelet; do
		[[ -x $bin/$b ]] && cp "$bin/$b" "$root/usr/bin/"
	done
	# Debian's runc, and mount/umount (util-linux), which the kubelet runs
	# for pod volumes: dynamically linked, with their libraries.
	# e2fsprogs' mkfs.ext4 and resize2fs make and grow the filesystems of
	# an install (machined/install).
	for b in runc mount umount mkfs.ext4 resize2fs; do
		local dst=$root/usr/bin/$b
		[[ $b == mkfs.ext4 || $b == resize2fs ]] && dst=$root/usr/sbin/$b
		cp "$(command -v $b)" "$dst"
		ldd "$(command -v $b)" | grep -o '/[^ ]*' | while read -r lib; do
			mkdir -p "$root$(dirname "$lib")" && cp -L "$lib" "$root$lib"
		done
	done
	cp /etc/mke2fs.conf "$root/etc/"
	# The boot loader an install writes to the disk.
	build_boot
	mkdir -p "$root/usr/share/ballast/install"
	cp /usr/lib/grub/i386-pc/boot.img "$tmp/boot/core.img" "$root/usr/share/ballast/install/"
	gzip -9 -n -c "$tmp/boot/efi.img" >"$root/usr/share/ballast/install/efi.img.gz"
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

# The Kubernetes component images (make container-images) as a second
# initrd: an uncompressed cpio that puts the OCI archives where machined
# imports them from (/usr/share/ballast/images). The archives' layers are
# already tar; uncompressed, the kernel unpacks it at memory speed (xz would
# cost ~40 s of TCG boot time for ~3x less to transfer).
build_images() {
	local root=$tmp/images
	rm -rf "$root" "$out/images.cpio" && mkdir -p "$root/usr/share/ballast/images"
	ls "$out"/images/*.tar >/dev/null 2>&1 || { echo "build-os: no component images in $out/images (make container-images): images.cpio not built"; return 0; }
	cp "$out"/images/*.tar "$root/usr/share/ballast/images/"
	find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	(cd "$root" && find . -mindepth 1 | sort | cpio --quiet -o -H newc --reproducible -R 0:0) >"$out/images.cpio.tmp"
	mv "$out/images.cpio.tmp" "$out/images.cpio"
	echo "build-os: images.cpio $(du -m "$out/images.cpio" | cut -f1) MB ($(ls "$root/usr/share/ballast/images" | wc -l) images)"
}

build_pxe() {
	rm -rf "$out/pxe" && mkdir -p "$out/pxe"
	cp "$out/vmlinuz" "$out/initramfs.xz" "$out/pxe/"
	local images=""
	if [[ -f $out/images.cpio ]]; then
		cp "$out/images.cpio" "$out/pxe/"
		images="initrd images.cpio"
	fi
	# boot.ipxe: a Kubernetes node (with the component images when built).
	# agent.ipxe: the agent and etcd only, 52 MB to fetch instead of 500.
	cat >"$out/pxe/boot.ipxe" <<-EOF
		#!ipxe
		# Ballast: serve this folder over HTTP (or TFTP) and chain-load this script.
		kernel vmlinuz $CMDLINE
		initrd initramfs.xz
		$images
		boot
	EOF
	cat >"$out/pxe/agent.ipxe" <<-EOF
		#!ipxe
		# Ballast without Kubernetes (the agent and etcd): 52 MB instead of 500.
		kernel vmlinuz $CMDLINE ballast.kubernetes=false
		initrd initramfs.xz
		boot
	EOF
	echo "build-os: pxe/ ($(ls "$out/pxe" | tr '\n' ' '))"
}

# grub.cfg of the ISO and the disk: serial console first (what qemu -nographic
# and cloud consoles show), one entry, one second.
grub_cfg() { # $1: kernel/initramfs directory, $2: extra kernel arguments
	local initrds="$1/initramfs.xz"
	[[ -f $out/images.cpio ]] && initrds+=" $1/images.cpio"
	cat <<-EOF
		serial --unit=0 --speed=115200
		terminal_input serial console
		terminal_output serial console
		set timeout=1
		menuentry "Ballast" {
			linux $1/vmlinuz $CMDLINE $2
			initrd $initrds
		}
	EOF
}

build_iso() {
	local iso=$tmp/iso
	rm -rf "$iso" && mkdir -p "$iso/boot/grub"
	cp "$out/vmlinuz" "$out/initramfs.xz" "$iso/boot/"
	[[ -f $out/images.cpio ]] && cp "$out/images.cpio" "$iso/boot/"
	grub_cfg /boot "" >"$iso/boot/grub/grub.cfg"
	find "$iso" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	# BIOS (El Torito, i386-pc) and UEFI (an embedded FAT image) in one ISO.
	grub-mkrescue --quiet -o "$out/ballast.iso.tmp" "$iso" -- -volid BALLAST >/dev/null 2>"$tmp/mkrescue.log" ||
		{ cat "$tmp/mkrescue.log" >&2; exit 1; }
	mv "$out/ballast.iso.tmp" "$out/ballast.iso"
	echo "build-os: ballast.iso $(du -m --apparent-size "$out/ballast.iso" | cut -f1) MB"
}

# Disk layout (MiB): EFI 64, BIOS boot 1, BOOT-A and BOOT-B SLOT each (the
# kernel, the initramfs and the component images), STATE 100, EPHEMERAL the
# rest of DISK_SIZE.
DISK_SIZE=${DISK_SIZE:-4096}
SLOT=768
le() { # $1: value, $2: bytes → little-endian bytes on stdout
	local v=$1 i
	for ((i = 0; i < $2; i++)); do printf "\\$(printf %03o $((v & 255)))"; v=$((v >> 8)); done
}

# The boot loader of a disk (the cloud disk and an installed machine): GRUB
# for both firmwares. Its built-in config only finds the EFI system
# partition (by its volume ID) and reads ballast/grub.cfg there: GRUB runs a
# built-in config with its rescue parser, which has no `if`. That file picks
# the slot from GRUB's environment block beside it (ballast/grubenv), the
# A/B record: `active` is the slot every boot starts; `next` is tried once:
# GRUB clears it and sets `trying` before it boots that slot, so a new
# system that does not come up is never booted twice. machined makes a tried
# slot active once its health gate passes (docs/upgrades.md). Writes
# $tmp/boot/{efi.img,core.img}.
build_boot() {
	local b=$tmp/boot
	rm -rf "$b" && mkdir -p "$b"
	cat >"$b/embed.cfg" <<-'EOF'
		search --no-floppy --fs-uuid 5BA1-1A57 --set=root
		set prefix=($root)/ballast
		configfile ($root)/ballast/grub.cfg
	EOF
	cat >"$b/grub.cfg" <<-'EOF'
		serial --unit=0 --speed=115200
		terminal_input serial console
		terminal_output serial console
		set slot=a
		load_env -f ($root)/ballast/grubenv
		if [ "$active" = b ]; then set slot=b; fi
		if [ "$next" = a -o "$next" = b ]; then
			set slot=$next
			set trying=$next
			set next=
			save_env -f ($root)/ballast/grubenv next trying
		fi
		echo "Ballast: booting slot $slot"
		if [ "$slot" = b ]; then
			search --no-floppy --label BOOT-B --set=root
		else
			search --no-floppy --label BOOT-A --set=root
		fi
		set prefix=($root)/grub
		configfile ($root)/grub/grub.cfg
	EOF
	local mods="part_gpt ext2 fat search search_label search_fs_uuid configfile normal linux echo serial terminal test loadenv"
	grub-mkimage -O x86_64-efi -o "$b/BOOTX64.EFI" -p /ballast -c "$b/embed.cfg" $mods
	grub-mkimage -O i386-pc -o "$b/core.img" -p /ballast -c "$b/embed.cfg" $mods biosdisk
	grub-editenv "$b/grubenv" create
	mkfs.vfat -C -n EFI -i 5ba11a57 "$b/efi.img" $((64 * 1024)) >/dev/null
	mmd -i "$b/efi.img" ::/EFI ::/EFI/BOOT ::/ballast
	mcopy -m -i "$b/efi.img" "$b/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
	mcopy -m -i "$b/efi.img" "$b/grubenv" "$b/grub.cfg" ::/ballast/
}

build_disk() {
	local d=$tmp/disk img=$out/disk.raw.tmp state=$((66 + 2 * SLOT)) eph=$((66 + 2 * SLOT + 100))
	rm -rf "$d" && mkdir -p "$d/boot/grub" "$d/boot/slot"
	# Fixed GUIDs and filesystem UUIDs keep the image reproducible; every
	# machine made from it shares them (as with any cloud image).
	local guid=5ba11a57-0000-4000-8000-0000000000
	cp "$out/vmlinuz" "$out/initramfs.xz" "$d/boot/slot/"
	[[ -f $out/images.cpio ]] && cp "$out/images.cpio" "$d/boot/slot/"
	grub_cfg /slot "ballast.platform=nocloud ballast.slot=a" | sed 's/ballast.platform=metal //' >"$d/boot/grub/grub.cfg"
	find "$d/boot" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	export E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH
	# BOOT-A is written once per image (no journal); STATE and EPHEMERAL are
	# the node's, journaled.
	local ext4opts=(-q -F -t ext4 -E root_owner=0:0,hash_seed=${guid}01,lazy_itable_init=0,lazy_journal_init=0)
	mkfs.ext4 "${ext4opts[@]}" -O ^has_journal -L BOOT-A -U ${guid}a1 -d "$d/boot" "$d/boot-a.img" ${SLOT}M >/dev/null
	# mkfs.ext4 -d copies the files' ctimes, which touch cannot set: pin them.
	(cd "$d/boot" && find . -mindepth 1 | sed 's|^\.||') | while read -r f; do echo "sif $f ctime @$SOURCE_DATE_EPOCH"; done >"$d/ctimes"
	echo "sif / ctime @$SOURCE_DATE_EPOCH" >>"$d/ctimes"
	debugfs -w -f "$d/ctimes" "$d/boot-a.img" >/dev/null 2>&1
	mkfs.ext4 "${ext4opts[@]}" -L STATE -U ${guid}a5 "$d/state.img" 100M >/dev/null
	mkfs.ext4 "${ext4opts[@]}" -L EPHEMERAL -U ${guid}a6 "$d/ephemeral.img" $((DISK_SIZE - 2 - eph))M >/dev/null

	build_boot

	rm -f "$img" && truncate -s "${DISK_SIZE}M" "$img"
	sgdisk -o -U ${guid}00 \
		-n 1:1M:+64M -t 1:EF00 -c 1:EFI -u 1:${guid}01 \
		-n 2:65M:+1M -t 2:EF02 -c 2:BIOS -u 2:${guid}02 \
		-n 3:66M:+${SLOT}M -t 3:8300 -c 3:BOOT-A -u 3:${guid}03 \
		-n 4:$((66 + SLOT))M:+${SLOT}M -t 4:8300 -c 4:BOOT-B -u 4:${guid}04 \
		-n 5:${state}M:+100M -t 5:8300 -c 5:STATE -u 5:${guid}05 \
		-n 6:${eph}M:$((DISK_SIZE - 2))M -t 6:8300 -c 6:EPHEMERAL -u 6:${guid}06 "$img" >/dev/null
	put() { dd if="$1" of="$img" bs=1M seek="$2" conv=notrunc,sparse status=none; }
	put "$tmp/boot/efi.img" 1
	put "$d/boot-a.img" 66
	put "$d/state.img" $state
	put "$d/ephemeral.img" $eph

	# BIOS: GRUB's boot.img in the MBR's code area, core.img in the BIOS boot
	# partition (what grub-install does, without a block device): boot.img
	# learns core.img's first sector, core.img's first sector (diskboot)
	# the blocklist of the rest.
	local core_lba=$((65 * 2048)) sectors=$((($(stat -c %s "$tmp/boot/core.img") + 511) / 512))
	cp "$tmp/boot/core.img" "$d/core.img"
	{ le $((core_lba + 1)) 8; le $((sectors - 1)) 2; } | dd of="$d/core.img" bs=1 seek=500 conv=notrunc status=none
	dd if="$d/core.img" of="$img" bs=512 seek=$core_lba conv=notrunc status=none
	dd if=/usr/lib/grub/i386-pc/boot.img of="$img" bs=440 count=1 conv=notrunc status=none
	le $core_lba 8 | dd of="$img" bs=1 seek=$((0x5c)) conv=notrunc status=none
	printf '\x90\x90' | dd of="$img" bs=1 seek=$((0x66)) conv=notrunc status=none

	mv "$img" "$out/disk.raw"
	qemu-img convert -c -O qcow2 "$out/disk.raw" "$out/disk.qcow2.tmp" && mv "$out/disk.qcow2.tmp" "$out/disk.qcow2"
	echo "build-os: disk.raw ${DISK_SIZE} MB ($(du -m "$out/disk.raw" | cut -f1) MB allocated), disk.qcow2 $(du -m "$out/disk.qcow2" | cut -f1) MB"
}

need() { [[ -f $out/initramfs.xz && -f $out/vmlinuz ]] || build_initramfs; }

# The artifacts are rebuilt only when an input changed: the binaries, runc,
# the component images, the CNI plugins, the kernel and this script.
inputs_key() {
	{
		sha256sum "$bin"/{machined,containerd,containerd-shim-runc-v2} "$(command -v runc)" "$0"
		[[ -x $bin/kubelet ]] && sha256sum "$bin/kubelet"
		sha256sum "$out"/images/*.tar 2>/dev/null || true
		echo "$kdir" "$SOURCE_DATE_EPOCH" "$DISK_SIZE"
	} | sha256sum | cut -c1-16
}
if [[ $what == all ]]; then
	key=$(inputs_key)
	if [[ -f $out/os.key && $(cat "$out/os.key") == "$key" && -f $out/disk.qcow2 && -f $out/ballast.iso && -f $out/pxe/boot.ipxe ]]; then
		echo "build-os: artifacts up to date ($key)"
		exit 0
	fi
	rm -f "$out/os.key"
fi

case $what in
initramfs) build_initramfs ;;
images) build_images ;;
pxe) need; build_images; build_pxe ;;
iso) need; build_iso ;;
disk) need; build_disk ;;
all) build_initramfs; build_images; build_pxe; build_iso; build_disk; echo "$key" >"$out/os.key" ;;
*) echo "usage: hack/build-os.sh [initramfs|images|pxe|iso|disk|all]" >&2; exit 2 ;;
esac
