#!/usr/bin/env bash
# Deploys hack/demo.yaml on the cluster 'make cluster' made and shows it
# answering through its Service from a pod. Usage: hack/cluster-demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/tools.env
export PATH=$PWD/_out/bin:$PATH
nodectl kubeconfig --force >/dev/null
kubectl apply -f hack/demo.yaml
kubectl rollout status deployment/hello --timeout=180s
kubectl get pods -l app=hello -o wide
echo "asking the Service 'hello' from a pod:"
kubectl delete pod hello-client --ignore-not-found --wait >/dev/null
kubectl run hello-client --restart=Never --image="ballast.local/busybox:$BUSYBOX_VERSION" \
	--image-pull-policy=IfNotPresent -- sh -c 'printf "GET / HTTP/1.0\r\n\r\n" | nc -w 5 hello 80 | tail -1' >/dev/null
kubectl wait --for=jsonpath='{.status.phase}'=Succeeded pod/hello-client --timeout=120s >/dev/null
kubectl logs hello-client
kubectl delete pod hello-client --wait=false >/dev/null
