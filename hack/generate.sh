#!/usr/bin/env bash
# Regenerates the Go code of the machine API from api/**/*.proto with pinned
# tools. Usage: hack/generate.sh [OUTDIR]   (default: the repository root)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root}
source "$root/hack/tools.env"

tools=$root/_out/tools
mkdir -p "$tools/bin"
if ! command -v protoc >/dev/null; then
	"$root/hack/install-deps.sh" protoc
fi
have=$(protoc --version | awk '{print $2}')
if [[ $have != "$PROTOC_VERSION" ]]; then
	echo "generate: protoc $have found, $PROTOC_VERSION pinned (hack/tools.env)" >&2
	exit 1
fi
want_go="protoc-gen-go $PROTOC_GEN_GO_VERSION"
if [[ ! -x $tools/bin/protoc-gen-go ]] || [[ $("$tools/bin/protoc-gen-go" --version) != "$want_go" ]]; then
	GOBIN=$tools/bin go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
fi
want_grpc="protoc-gen-go-grpc ${PROTOC_GEN_GO_GRPC_VERSION#v}"
if [[ ! -x $tools/bin/protoc-gen-go-grpc ]] || [[ $("$tools/bin/protoc-gen-go-grpc" --version) != "$want_grpc" ]]; then
	GOBIN=$tools/bin go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
fi

cd "$root"
mapfile -t protos < <(find api -name '*.proto' | sort)
PATH=$tools/bin:$PATH protoc -I api -I /usr/include \
	--go_out="$out/api" --go_opt=paths=source_relative \
	--go-grpc_out="$out/api" --go-grpc_opt=paths=source_relative \
	"${protos[@]}"
