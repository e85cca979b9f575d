#!/usr/bin/env bash
# Builds the containerd daemon, its runc shim and ctr from the containerd
# module at the version machined's Go client uses (go.mod), into
# _out/containerd/<version>/. A version already built is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/tools.env
mod=$(go list -m -f '{{.Version}}' github.com/containerd/containerd/v2)
[[ $mod == "$CONTAINERD_VERSION" ]] || { echo "build-containerd: go.mod has containerd $mod, tools.env says $CONTAINERD_VERSION" >&2; exit 1; }
out=$(realpath -m "${OUT:-_out}/containerd/$CONTAINERD_VERSION")
bins=(containerd containerd-shim-runc-v2 ctr)
have=1
for b in "${bins[@]}"; do [[ -x $out/$b ]] || have=0; done
if [[ $have == 1 ]]; then echo "build-containerd: $CONTAINERD_VERSION cached"; exit 0; fi
echo "build-containerd: building $CONTAINERD_VERSION"
start=$SECONDS
mkdir -p "$out.tmp"
pkgs=()
for b in "${bins[@]}"; do pkgs+=("github.com/containerd/containerd/v2/cmd/$b@$CONTAINERD_VERSION"); done
# go install @version builds with containerd's own go.mod, as its release does.
GOBIN=$out.tmp CGO_ENABLED=0 GOFLAGS=-buildvcs=false go install -trimpath \
	-ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" "${pkgs[@]}"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "build-containerd: built in $((SECONDS - start)) s"
