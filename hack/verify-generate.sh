#!/usr/bin/env bash
# Fails when the committed generated code differs from what `make generate`
# produces from the .proto files and the pinned tools.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/api"
(cd "$root/api" && find . -name '*.proto' -exec install -D -m 0644 {} "$tmp/api/{}" \;)
"$root/hack/generate.sh" "$tmp"
status=0
while IFS= read -r f; do
	rel=${f#"$tmp"/}
	if ! diff -u "$root/$rel" "$f"; then
		status=1
	fi
done < <(find "$tmp/api" -name '*.pb.go' | sort)
# Generated files that no longer have a .proto.
while IFS= read -r f; do
	rel=${f#"$root"/}
	[[ -f $tmp/$rel ]] || { echo "stale generated file: $rel" >&2; status=1; }
done < <(find "$root/api" -name '*.pb.go' | sort)
if [[ $status -ne 0 ]]; then
	echo "verify-generate: generated code is out of date; run 'make generate'" >&2
fi
exit $status
