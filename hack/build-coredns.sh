#!/usr/bin/env bash
# Builds CoreDNS from the github.com/coredns/coredns module pinned in
# images/coredns/go.mod into _out/coredns/<version>/coredns, and Ballast's
# pause (images/pause) into _out/pause/<version>/pause. A binary already built
# for its version is kept, so a second run takes no time.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/tools.env
out=$(realpath -m "${OUT:-_out}")
mod=$(cd images/coredns && go list -m -f "{{.Version}}" github.com/coredns/coredns)
[[ $mod == "$COREDNS_VERSION" ]] || { echo "build-coredns: images/coredns/go.mod pins $mod, tools.env says $COREDNS_VERSION" >&2; exit 1; }
dst=$out/coredns/$COREDNS_VERSION/coredns
if [[ -x $dst ]]; then
	echo "build-coredns: coredns $COREDNS_VERSION cached"
else
	echo "build-coredns: building coredns $COREDNS_VERSION"
	start=$SECONDS
	mkdir -p "$(dirname "$dst")"
	(cd images/coredns && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" -o "$dst.tmp" github.com/coredns/coredns)
	mv "$dst.tmp" "$dst"
	echo "build-coredns: coredns built in $((SECONDS - start)) s"
fi
# pause is tiny; it is rebuilt when its source is newer.
dst=$out/pause/$PAUSE_VERSION/pause
if [[ ! -x $dst || images/pause/main.go -nt $dst ]]; then
	mkdir -p "$(dirname "$dst")"
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$PAUSE_VERSION" -o "$dst.tmp" ./images/pause
	mv "$dst.tmp" "$dst"
	echo "build-coredns: pause $PAUSE_VERSION built"
fi
