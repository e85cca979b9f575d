# Ballast — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

OUT      ?= _out
BIN      := $(OUT)/bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
COMMIT_TIME ?= $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null)
LDFLAGS  := -s -w -X github.com/ballast-os/ballast/pkg/version.Version=$(VERSION) \
            -X github.com/ballast-os/ballast/pkg/version.GitCommit=$(COMMIT) \
            -X github.com/ballast-os/ballast/pkg/version.CommitTime=$(COMMIT_TIME)
GO       ?= go
FUZZTIME ?= 15s

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build nodectl and machined into _out/bin
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/nodectl ./cmd/nodectl
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/machined ./cmd/machined

.PHONY: containerd
containerd: ## Build containerd, its runc shim and ctr from the module version machined's client uses, into _out/bin (cached by version)
	hack/build-containerd.sh
	@source hack/tools.env && mkdir -p $(BIN) && \
		for b in containerd containerd-shim-runc-v2 ctr; do cp -p $(OUT)/containerd/$$CONTAINERD_VERSION/$$b $(BIN)/$$b.tmp && mv $(BIN)/$$b.tmp $(BIN)/$$b; done

.PHONY: images
images: container-images os bundle ## Build every artifact: the container images, the OS (vmlinuz, initramfs.xz, pxe/, ballast.iso, disk.raw/qcow2) and the upgrade bundle (_out/bundle)

.PHONY: bundle
bundle: os ## Write the upgrade bundle _out/bundle/ (kernel, initramfs, component images, machined, image archives, manifest.json with their SHA-256; docs/upgrades.md) from the built artifacts
	@source hack/tools.env && $(GO) run ./hack/mkbundle -out $(OUT)/bundle -version $(VERSION) -commit-time '$(COMMIT_TIME)' \
		-kubernetes $$KUBERNETES_VERSION -artifacts $(OUT)

.PHONY: container-images
container-images: containerd ## Build kubelet, the Kubernetes components, CoreDNS and pause, and pack the OCI image archives into _out/images (cached by version)
	hack/install-deps.sh test
	hack/build-k8s.sh
	hack/build-coredns.sh
	@source hack/tools.env && $(GO) run ./hack/mkimages -bin-dir $(OUT)/k8s/$$KUBERNETES_VERSION -version $$KUBERNETES_VERSION \
		-coredns $(OUT)/coredns/$$COREDNS_VERSION/coredns -pause $(OUT)/pause/$$PAUSE_VERSION/pause -out $(OUT)/images && \
		mkdir -p $(BIN) && cp -p $(OUT)/k8s/$$KUBERNETES_VERSION/kubelet $(BIN)/kubelet.tmp && mv $(BIN)/kubelet.tmp $(BIN)/kubelet

.PHONY: kubernetes
kubernetes: containerd ## Build one Kubernetes release side by side (KUBERNETES_VERSION=v1.36.1 make kubernetes; default the pinned one): _out/k8s/<version>/ holds its binaries, images/ (every archive a node of that release imports) and bundle/ (kubelet + component archives, for nodectl upgrade-k8s); cached by version
	hack/install-deps.sh test
	hack/build-k8s.sh
	hack/build-coredns.sh
	@source hack/tools.env && k8s=$(OUT)/k8s/$$KUBERNETES_VERSION && \
		$(GO) run ./hack/mkimages -bin-dir $$k8s -version $$KUBERNETES_VERSION \
		-coredns $(OUT)/coredns/$$COREDNS_VERSION/coredns -pause $(OUT)/pause/$$PAUSE_VERSION/pause -out $$k8s/images && \
		$(GO) run ./hack/mkbundle -out $$k8s/bundle -version $(VERSION) -commit-time '$(COMMIT_TIME)' \
		-kubernetes $$KUBERNETES_VERSION -artifacts $$k8s -kubelet $$k8s/kubelet

# The release TestKubernetesUpgrade upgrades from (hack/e2e/upgradek8s_test.go).
K8S_UPGRADE_FROM := v1.36.1

.PHONY: kubernetes-releases
kubernetes-releases: ## Build the Kubernetes releases the upgrade tests use: the pinned one's Kubernetes bundle, and v1.36.1's binaries and images (cached by version)
	$(MAKE) kubernetes
	KUBERNETES_VERSION=$(K8S_UPGRADE_FROM) $(MAKE) kubernetes

.PHONY: os
os: build container-images ## Build the OS artifacts from _out/bin and Debian's kernel: vmlinuz, initramfs.xz, pxe/, ballast.iso, disk.raw, disk.qcow2 (cached by input hash; docs/boot.md)
	hack/install-deps.sh image qemu
	hack/build-kernel.sh
	hack/build-os.sh all

.PHONY: kernel
kernel: ## Fetch and unpack Debian's kernel for the OS image into _out/kernel/<version> (vmlinuz, modules and their index; cached)
	hack/install-deps.sh image
	hack/build-kernel.sh

.PHONY: cluster
cluster: deps build container-images ## Create a local HA cluster (3 control planes + 1 worker; needs root), deploy hack/demo.yaml and show it answering
	$(BIN)/nodectl cluster create $(CLUSTER_ARGS)
	hack/cluster-demo.sh

.PHONY: cluster-destroy
cluster-destroy: ## Destroy the local cluster made by 'make cluster'
	$(BIN)/nodectl cluster destroy $(CLUSTER_ARGS)

.PHONY: bench
bench: deps build images kubernetes-releases ## Measure clusters, etcd (vs stock etcd), Kubernetes, the VIP and the LB (vs keepalived/haproxy); writes docs/benchmarks.md (root)
	hack/install-deps.sh bench
	@v=$$($(GO) list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3) && mkdir -p $(OUT)/etcd/$$v && \
		{ [[ -x $(OUT)/etcd/$$v/etcd ]] || $(GO) build -trimpath -o $(OUT)/etcd/$$v/etcd go.etcd.io/etcd/server/v3; }
	$(GO) run ./hack/bench -bin $(BIN) -stock-etcd $(OUT)/etcd/$$($(GO) list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)/etcd -out docs/benchmarks.md

.PHONY: deps
deps: ## Install the Debian packages the build and tests need
	hack/install-deps.sh all

.PHONY: test
test: deps verify-generate lint test-unit test-e2e fuzz ## Run every check and test (what CI runs)

.PHONY: test-unit
test-unit: containerd testsum ## Unit tests (root for the container runner's; BALLAST_SKIP_PRIVILEGED=1 skips those); prints test counts per package
	set -o pipefail; BALLAST_BIN_DIR=$(abspath $(BIN)) CGO_ENABLED=1 $(GO) test -race -count=1 -json ./pkg/... ./machined/... ./hack/testsum/... ./hack/qemuvm/... ./hack/probe/... | $(BIN)/testsum -title "unit tests"

.PHONY: test-e2e
test-e2e: build images kubernetes-releases testsum ## End-to-end tests with real binaries (root; BALLAST_SKIP_PRIVILEGED=1 skips the privileged ones)
	set -o pipefail; BALLAST_BIN_DIR=$(abspath $(BIN)) BALLAST_OUT_DIR=$(abspath $(OUT)) $(GO) test -count=1 -timeout 75m -json ./hack/e2e/... | $(BIN)/testsum -v -title "end-to-end tests"

.PHONY: testsum
testsum:
	@mkdir -p $(BIN)
	@$(GO) build -o $(BIN)/testsum ./hack/testsum

.PHONY: fuzz
fuzz: ## Fuzz config decoding for FUZZTIME (default 15s)
	$(GO) test ./pkg/config -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)

.PHONY: generate
generate: ## Regenerate the API's Go code from api/**/*.proto with pinned tools
	hack/generate.sh

.PHONY: verify-generate
verify-generate: ## Fail when the committed generated code drifts from the .proto files
	hack/verify-generate.sh

.PHONY: verify-tidy
verify-tidy: ## Fail when go.mod/go.sum are not what 'go mod tidy' makes them
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run 'go mod tidy' (diff below)"; $(GO) mod tidy -diff; exit 1; }

.PHONY: lint
lint: verify-tidy ## gofmt, go vet, module tidiness and the import-direction check
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './_out/*')); \
		if [[ -n $$out ]]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -count=1 -run TestImportDirection ./hack/lint/...

.PHONY: clean
clean: ## Remove build outputs
	rm -rf $(OUT)
