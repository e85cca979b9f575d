#!/usr/bin/env bash
# Installs the Debian packages Ballast's build and tests need. Idempotent: it
# does nothing when everything is present. Usage: hack/install-deps.sh [GROUP…]
# Groups: protoc (code generation), test (integration tests), image (the OS
# artifacts: the kernel's module index, initramfs, ISO and disk tools), qemu
# (booting them), bench (the baselines make bench measures against), all
# (default: protoc and test).
set -euo pipefail

declare -A groups=(
	[protoc]="protobuf-compiler:protoc libprotobuf-dev:/usr/include/google/protobuf/duration.proto"
	[test]="iproute2:ip etcd-client:etcdctl runc:runc util-linux:nsenter busybox-static:/bin/busybox nftables:/usr/sbin/nft containernetworking-plugins:/usr/lib/cni/bridge dnsmasq-base:/usr/sbin/dnsmasq chrony:/usr/sbin/chronyd faketime:faketime gdisk:sgdisk grub-common:grub-editenv prometheus:promtool rsyslog:rsyslogd"
	[image]="kmod:depmod xz-utils:xz cpio:cpio grub-pc-bin:/usr/lib/grub/i386-pc/boot.img grub-efi-amd64-bin:/usr/lib/grub/x86_64-efi/linux.mod grub-common:grub-mkimage xorriso:xorriso mtools:mcopy dosfstools:mkfs.vfat e2fsprogs:mkfs.ext4 gdisk:sgdisk qemu-utils:qemu-img"
	[qemu]="qemu-system-x86:qemu-system-x86_64 ipxe-qemu:/usr/lib/ipxe/qemu/efi-virtio.rom ovmf:/usr/share/OVMF/OVMF_CODE.fd"
	[bench]="keepalived:keepalived haproxy:haproxy nftables:nft etcd-server:etcd"
)
want=("$@")
[[ ${#want[@]} -eq 0 || ${want[0]} == all ]] && want=(protoc test)

missing=()
for g in "${want[@]}"; do
	[[ -n ${groups[$g]+x} ]] || { echo "install-deps: unknown group $g" >&2; exit 2; }
	for entry in ${groups[$g]}; do
		pkg=${entry%%:*} probe=${entry#*:}
		if [[ $probe == /* ]]; then [[ -e $probe ]] && continue; else command -v "$probe" >/dev/null && continue; fi
		missing+=("$pkg")
	done
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -ne 0 ]]; then
	echo "install-deps: need root to install: ${missing[*]}" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
