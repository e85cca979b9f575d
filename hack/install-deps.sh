#!/usr/bin/env bash
# Installs the Debian packages Ballast's build and tests need. Idempotent: it
# does nothing when everything is present. Usage: hack/install-deps.sh [GROUP…]
# Groups: protoc (code generation), test (integration tests), image (the OS
# image: the kernel's module index), bench (the
# baselines make bench measures against), all (default: protoc and test).
set -euo pipefail

declare -A groups=(
	[protoc]="protobuf-compiler:protoc libprotobuf-dev:/usr/include/google/protobuf/duration.proto"
	[test]="iproute2:ip etcd-client:etcdctl runc:runc util-linux:nsenter busybox-static:/bin/busybox nftables:/usr/sbin/nft containernetworking-plugins:/usr/lib/cni/bridge dnsmasq-base:/usr/sbin/dnsmasq"
	[image]="kmod:depmod xz-utils:xz"
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
