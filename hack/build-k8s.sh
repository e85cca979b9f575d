#!/usr/bin/env bash
# Builds the Kubernetes components from the k8s.io/kubernetes module pinned in
# images/kubernetes/go.mod into _out/k8s/<version>/. A component already built
# for that version is kept, so a second run takes no time.
# Usage: hack/build-k8s.sh [COMPONENT…]  (default: all in images/kubernetes/go.mod)
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/tools.env
out=${OUT:-_out}/k8s/$KUBERNETES_VERSION
mkdir -p "$out"
comps=("$@")
[[ ${#comps[@]} -gt 0 ]] || mapfile -t comps < <(sed -n 's#^\tk8s.io/kubernetes/cmd/##p' images/kubernetes/go.mod)
mod=$(cd images/kubernetes && go list -m -f "{{.Version}}" k8s.io/kubernetes)
[[ $mod == "$KUBERNETES_VERSION" ]] || { echo "build-k8s: images/kubernetes/go.mod pins $mod, tools.env says $KUBERNETES_VERSION" >&2; exit 1; }
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitTreeState=clean"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION"
for c in "${comps[@]}"; do
	if [[ -x $out/$c ]]; then echo "build-k8s: $c $KUBERNETES_VERSION cached"; continue; fi
	echo "build-k8s: building $c $KUBERNETES_VERSION"
	start=$SECONDS
	(cd images/kubernetes && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "../../$out/$c.tmp" "k8s.io/kubernetes/cmd/$c")
	mv "$out/$c.tmp" "$out/$c"
	echo "build-k8s: $c built in $((SECONDS - start)) s"
done
