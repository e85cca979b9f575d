#!/usr/bin/env bash
# Builds the Kubernetes components into $OUT/k8s/<version>/ (OUT defaults to
# _out; relative or absolute). The pinned version (hack/tools.env) builds from
# images/kubernetes, whose go.mod requires k8s.io/kubernetes and replaces its
# staging modules. Another version (KUBERNETES_VERSION=v1.36.1 make …, for
# upgrade tests and bundles) builds from a module generated once into
# $OUT/k8s/<version>/mod: the same tool list, k8s.io/kubernetes at that
# version, the staging modules its go.mod replaces with ./staging at the
# matching v0 version, and `go mod tidy` for exactly that release's
# dependencies. A component already built for a
# version is kept, so a second run takes no time.
# Usage: [KUBERNETES_VERSION=vX.Y.Z] hack/build-k8s.sh [COMPONENT…]
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/tools.env
out=$(realpath -m "${OUT:-_out}/k8s/$KUBERNETES_VERSION")
mkdir -p "$out"
comps=("$@")
[[ ${#comps[@]} -gt 0 ]] || mapfile -t comps < <(sed -n 's#^\tk8s.io/kubernetes/cmd/##p' images/kubernetes/go.mod)
pinned=$(cd images/kubernetes && go list -m -f "{{.Version}}" k8s.io/kubernetes)
mod=$PWD/images/kubernetes
if [[ $pinned != "$KUBERNETES_VERSION" ]]; then
	[[ $KUBERNETES_VERSION =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || { echo "build-k8s: KUBERNETES_VERSION=$KUBERNETES_VERSION is not a release vMAJOR.MINOR.PATCH" >&2; exit 1; }
	staging=v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}
	mod=$out/mod
	if [[ ! -s $mod/go.sum ]]; then
		echo "build-k8s: generating the module for k8s.io/kubernetes $KUBERNETES_VERSION (staging modules $staging)"
		rm -rf "$mod.tmp" && mkdir -p "$mod.tmp"
		# The staging modules are the ones the release's own go.mod
		# replaces with ./staging/src/…: a release may add one.
		gomod=$(cd / && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
		[[ -s $gomod ]] || { echo "build-k8s: k8s.io/kubernetes@$KUBERNETES_VERSION is not on the module proxy" >&2; exit 1; }
		{
			echo "module ballast.local/kubernetes-$KUBERNETES_VERSION"
			echo
			sed -n 's/^go .*/&/p' images/kubernetes/go.mod
			echo
			echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
			echo
			sed -n '/^tool (/,/^)/p' images/kubernetes/go.mod
			echo
			echo "replace ("
			awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print "\t" $1 " => " $1 " '"$staging"'"}' "$gomod"
			echo ")"
		} > "$mod.tmp/go.mod"
		(cd "$mod.tmp" && go mod tidy)
		rm -rf "$mod" && mv "$mod.tmp" "$mod"
	fi
	got=$(cd "$mod" && go list -m -f "{{.Version}}" k8s.io/kubernetes)
	[[ $got == "$KUBERNETES_VERSION" ]] || { echo "build-k8s: $mod requires k8s.io/kubernetes $got, not $KUBERNETES_VERSION" >&2; exit 1; }
fi
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitTreeState=clean"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION"
for c in "${comps[@]}"; do
	if [[ -x $out/$c ]]; then echo "build-k8s: $c $KUBERNETES_VERSION cached"; continue; fi
	echo "build-k8s: building $c $KUBERNETES_VERSION"
	start=$SECONDS
	(cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$c.tmp" "k8s.io/kubernetes/cmd/$c")
	mv "$out/$c.tmp" "$out/$c"
	echo "build-k8s: $c built in $((SECONDS - start)) s"
done
