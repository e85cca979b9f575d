package config

import (
	"errors"
	"strings"
	"testing"
)

// badCase is a malformed config built from a valid template.
type badCase struct {
	name   string
	worker bool   // start from workerTemplate instead of controlPlaneTemplate
	raw    string // use this text instead of an edited template
	edits  []edit
	// decode is set when Decode must reject the document (*DecodeError);
	// otherwise Validate must (*ValidationError).
	decode bool
	// path is the field path the error must name ("" for document-level
	// decode errors).
	path string
	// at is a substring of the edited document on the line the error must
	// point at; "" when the error has no line.
	at string
	// msg, when set, must appear in the error message.
	msg string
}

var badCases = []badCase{
	// Decode: unknown fields at several depths.
	{name: "unknown top-level field", decode: true, edits: []edit{r("version: v1alpha1\n", "version: v1alpha1\nkind: MachineConfig\n")},
		path: "kind", at: "kind:", msg: `unknown field "kind"`},
	{name: "unknown machine field with hint", decode: true, edits: []edit{r("  token: abc", "  tpye: worker\n  token: abc")},
		path: "machine.tpye", at: "tpye:", msg: `did you mean "type"?`},
	{name: "unknown interface field", decode: true, edits: []edit{r("        addresses:\n", "        adress:\n")},
		path: "machine.network.interfaces[0].adress", at: "adress:", msg: `unknown field "adress" (did you mean "addresses"?)`},
	{name: "unknown route field", decode: true, edits: []edit{r("metric: 1024", "metrik: 1024")},
		path: "machine.network.interfaces[0].routes[0].metrik", at: "metrik:", msg: `did you mean "metric"?`},
	{name: "unknown vip field", decode: true, edits: []edit{r("          ip: 10.0.0.5", "          address: 10.0.0.5")},
		path: "machine.network.interfaces[0].vip.address", at: "address: 10.0.0.5"},
	{name: "unknown snapshots field", decode: true, edits: []edit{r("      keep: 5", "      keepLast: 5")},
		path: "cluster.etcd.snapshots.keepLast", at: "keepLast:"},
	{name: "unknown second interface field", decode: true, edits: []edit{r("        dhcp: true", "        dhcp6: true")},
		path: "machine.network.interfaces[1].dhcp6", at: "dhcp6:", msg: `did you mean "dhcp"?`},

	// Decode: wrong types.
	{name: "mtu not an integer", decode: true, edits: []edit{r("mtu: 1500", "mtu: abc")},
		path: "machine.network.interfaces[0].mtu", at: "mtu: abc", msg: `cannot use "abc" as an integer`},
	{name: "mtu quoted", decode: true, edits: []edit{r("mtu: 1500", `mtu: "1500"`)},
		path: "machine.network.interfaces[0].mtu", at: "mtu:", msg: `cannot use "1500" as an integer`},
	{name: "dhcp not a boolean", decode: true, edits: []edit{r("dhcp: true", "dhcp: maybe")},
		path: "machine.network.interfaces[1].dhcp", at: "dhcp:", msg: "as a boolean"},
	{name: "hostname is a list", decode: true, edits: []edit{r("hostname: cp1", "hostname: [cp1, cp2]")},
		path: "machine.network.hostname", at: "hostname:", msg: "cannot use a list as a string"},
	{name: "nameservers is a scalar", decode: true,
		edits: []edit{r("    nameservers:\n      - 1.1.1.1\n      - 2606:4700:4700::1111\n", "    nameservers: 1.1.1.1\n")},
		path:  "machine.network.nameservers", at: "nameservers:", msg: "as a list"},
	{name: "podSubnets is a mapping", decode: true, edits: []edit{r("      - 10.244.0.0/16", "      a: b")},
		path: "cluster.network.podSubnets", at: "a: b", msg: "cannot use a mapping as a list"},
	{name: "machine is a scalar", decode: true, edits: []edit{r("  install:\n    disk: /dev/sda\n    image: ghcr.io/ballast-os/installer:v0.1.0\n", "  install: /dev/sda\n")},
		path: "machine.install", at: "install:", msg: "as a mapping"},
	{name: "quota quoted", decode: true, edits: []edit{r("quotaBackendBytes: 2147483648", `quotaBackendBytes: "2147483648"`)},
		path: "cluster.etcd.quotaBackendBytes", at: "quotaBackendBytes", msg: "as an integer"},
	{name: "negative snapshotCount", decode: true, edits: []edit{r("snapshotCount: 10000", "snapshotCount: -1")},
		path: "cluster.etcd.snapshotCount", at: "snapshotCount", msg: "non-negative integer"},
	{name: "duration without unit", decode: true, edits: []edit{r("heartbeatInterval: 100ms", "heartbeatInterval: 100")},
		path: "cluster.etcd.heartbeatInterval", at: "heartbeatInterval", msg: `invalid duration "100"`},
	{name: "duration garbage", decode: true, edits: []edit{r("interval: 1h", "interval: soon")},
		path: "cluster.etcd.snapshots.interval", at: "interval: soon", msg: "invalid duration"},
	{name: "extraArgs value is a list", decode: true, edits: []edit{r(`node-cidr-mask-size: "24"`, `node-cidr-mask-size: [24]`)},
		path: "cluster.controllerManager.extraArgs.node-cidr-mask-size", at: "node-cidr-mask-size", msg: "as a string"},

	// Decode: document structure.
	{name: "duplicate key", decode: true, edits: []edit{r("  token: abcdef", "  type: worker\n  token: abcdef")},
		path: "machine.type", at: "type: worker", msg: "duplicate key \"type\" (first defined on line 3)"},
	{name: "duplicate extraArgs key", decode: true, edits: []edit{r(`      audit-log-maxage: "30"`, "      audit-log-maxage: \"30\"\n      audit-log-maxage: \"31\"")},
		path: "cluster.apiServer.extraArgs.audit-log-maxage", at: `"31"`, msg: "duplicate key"},
	{name: "syntax error", decode: true, edits: []edit{r("  name: demo", "  name: demo: x")},
		at: "name: demo: x", msg: "invalid YAML"},
	{name: "tab indentation", decode: true, edits: []edit{r("  name: demo", "\tname: demo")},
		at: "\tname", msg: "invalid YAML"},
	{name: "second document", decode: true, edits: []edit{r("node-cidr-mask-size: \"24\"\n", "node-cidr-mask-size: \"24\"\n---\nversion: v1alpha1\n")},
		at: "---", msg: "second YAML document"},
	{name: "empty document", decode: true, raw: "# nothing here\n", msg: "empty document"},
	{name: "document is a list", decode: true, raw: "- version: v1alpha1\n", at: "- version", msg: "must be a mapping"},

	// Validate: versions, roles, tokens.
	{name: "bad version", edits: []edit{r("version: v1alpha1", "version: v1beta1")},
		path: "version", at: "version:", msg: `unsupported version "v1beta1"`},
	{name: "bad machine type", edits: []edit{r("type: controlplane", "type: master")},
		path: "machine.type", at: "type: master", msg: "want one of: controlplane, worker"},
	{name: "bad machine token", edits: []edit{r("  token: abcdef.0123456789abcdef", "  token: ABCDEF.0123456789abcdef")},
		path: "machine.token", at: "ABCDEF", msg: "not a valid token"},
	{name: "missing machine token", worker: true, edits: []edit{r("  token: abcdef.0123456789abcdef\n", "")},
		path: "machine.token", msg: "required"},
	{name: "short cluster token", edits: []edit{r("token: 123456.abcdefghijklmnop", "token: 123456.abc")},
		path: "cluster.token", at: "123456.abc", msg: "not a valid token"},

	{name: "bad time server", edits: []edit{r("  type: controlplane\n", "  type: controlplane\n  time:\n    servers: [ntp.example.org, \"not a host\"]\n")},
		path: "machine.time.servers[1]", at: "servers:", msg: "not a host name"},
	{name: "time boot timeout out of range", edits: []edit{r("  type: controlplane\n", "  type: controlplane\n  time:\n    bootTimeout: 1h\n")},
		path: "machine.time.bootTimeout", at: "bootTimeout:", msg: "out of range"},
	{name: "log destination of another scheme", edits: []edit{r("  type: controlplane\n", "  type: controlplane\n  logging:\n    destinations:\n      - endpoint: http://10.5.0.1:5140\n")},
		path: "machine.logging.destinations[0].endpoint", at: "endpoint:", msg: "is not tcp://HOST:PORT"},
	{name: "log destination without a port", edits: []edit{r("  type: controlplane\n", "  type: controlplane\n  logging:\n    destinations:\n      - endpoint: udp://10.5.0.1\n")},
		path: "machine.logging.destinations[0].endpoint", at: "endpoint:", msg: "needs a host and a port"},
	{name: "log destination format", edits: []edit{r("  type: controlplane\n", "  type: controlplane\n  logging:\n    destinations:\n      - endpoint: tcp://10.5.0.1:5140\n        format: gelf\n")},
		path: "machine.logging.destinations[0].format", at: "format:", msg: "is not a log format"},

	// Validate: certificates and keys.
	{name: "machine ca crt not base64", edits: []edit{r("crt: {{MACHINE_CA_CRT}}", "crt: not-base64!")},
		path: "machine.ca.crt", at: "not-base64!", msg: "not valid base64"},
	{name: "machine ca crt not a CA", edits: []edit{r("crt: {{MACHINE_CA_CRT}}", "crt: {{LEAF_CRT}}")},
		path: "machine.ca.crt", at: "crt: {{LEAF_CRT}}", msg: "not a CA"},
	{name: "machine ca key does not match", edits: []edit{r("key: {{MACHINE_CA_KEY}}", "key: {{OTHER_KEY}}")},
		path: "machine.ca.key", at: "{{OTHER_KEY}}", msg: "does not match"},
	{name: "machine ca key is a certificate", edits: []edit{r("key: {{MACHINE_CA_KEY}}", "key: {{MACHINE_CA_CRT}}")},
		path: "machine.ca.key", at: "key: {{MACHINE_CA_CRT}}", msg: "want a PRIVATE KEY"},
	{name: "controlplane without machine ca key", edits: []edit{r("    key: {{MACHINE_CA_KEY}}\n", "")},
		path: "machine.ca.key", msg: "required on controlplane nodes"},
	{name: "missing cluster ca", worker: true, edits: []edit{r("  ca:\n    crt: {{CLUSTER_CA_CRT}}\n", "")},
		path: "cluster.ca", msg: "required"},
	{name: "worker with machine ca key", worker: true, edits: []edit{r("    crt: {{MACHINE_CA_CRT}}\n", "    crt: {{MACHINE_CA_CRT}}\n    key: {{MACHINE_CA_KEY}}\n")},
		path: "machine.ca.key", at: "key: {{MACHINE_CA_KEY}}", msg: "workers must not hold CA private keys"},
	{name: "worker with cluster ca key", worker: true, edits: []edit{r("    crt: {{CLUSTER_CA_CRT}}\n", "    crt: {{CLUSTER_CA_CRT}}\n    key: {{CLUSTER_CA_KEY}}\n")},
		path: "cluster.ca.key", at: "key: {{CLUSTER_CA_KEY}}", msg: "workers must not hold CA private keys"},
	{name: "worker with aggregator ca", worker: true,
		edits: []edit{r("  ca:\n    crt: {{CLUSTER_CA_CRT}}\n", "  ca:\n    crt: {{CLUSTER_CA_CRT}}\n  aggregatorCA:\n    crt: {{AGGREGATOR_CA_CRT}}\n    key: {{AGGREGATOR_CA_KEY}}\n")},
		path:  "cluster.aggregatorCA", at: "aggregatorCA:", msg: "workers must not hold CA private keys"},
	{name: "worker with service account key", worker: true, edits: []edit{r("  ca:\n    crt: {{CLUSTER_CA_CRT}}\n", "  ca:\n    crt: {{CLUSTER_CA_CRT}}\n  serviceAccount:\n    key: {{SA_KEY}}\n")},
		path: "cluster.serviceAccount", at: "serviceAccount:", msg: "workers must not hold CA private keys"},
	{name: "worker with etcd ca key", worker: true, edits: []edit{r("  ca:\n    crt: {{CLUSTER_CA_CRT}}\n", "  ca:\n    crt: {{CLUSTER_CA_CRT}}\n  etcd:\n    ca:\n      crt: {{ETCD_CA_CRT}}\n      key: {{ETCD_CA_KEY}}\n")},
		path: "cluster.etcd.ca.key", at: "key: {{ETCD_CA_KEY}}", msg: "workers must not hold CA private keys"},
	{name: "controlplane without aggregator ca", edits: []edit{r("  aggregatorCA:\n    crt: {{AGGREGATOR_CA_CRT}}\n    key: {{AGGREGATOR_CA_KEY}}\n", "")},
		path: "cluster.aggregatorCA", msg: "required"},
	{name: "worker with kubelet serving ca", worker: true,
		edits: []edit{r("  ca:\n    crt: {{CLUSTER_CA_CRT}}\n", "  ca:\n    crt: {{CLUSTER_CA_CRT}}\n  kubeletServingCA:\n    crt: {{KUBELET_CA_CRT}}\n    key: {{KUBELET_CA_KEY}}\n")},
		path:  "cluster.kubeletServingCA", at: "kubeletServingCA:", msg: "workers must not hold CA private keys"},
	{name: "controlplane without kubelet serving ca", edits: []edit{r("  kubeletServingCA:\n    crt: {{KUBELET_CA_CRT}}\n    key: {{KUBELET_CA_KEY}}\n", "")},
		path: "cluster.kubeletServingCA", msg: "required"},
	{name: "controlplane without service account", edits: []edit{r("  serviceAccount:\n    key: {{SA_KEY}}\n", "")},
		path: "cluster.serviceAccount", msg: "required"},
	{name: "service account key not PEM", edits: []edit{r("key: {{SA_KEY}}", "key: aGVsbG8=")},
		path: "cluster.serviceAccount.key", at: "aGVsbG8=", msg: "does not contain a PEM block"},
	{name: "controlplane without etcd ca", edits: []edit{r("    ca:\n      crt: {{ETCD_CA_CRT}}\n      key: {{ETCD_CA_KEY}}\n", "")},
		path: "cluster.etcd.ca", msg: "required"},
	{name: "secretbox too short", edits: []edit{r("secretboxEncryptionSecret: {{SECRETBOX}}", "secretboxEncryptionSecret: c2hvcnQ=")},
		path: "cluster.secretboxEncryptionSecret", at: "c2hvcnQ=", msg: "exactly 32 bytes (got 5)"},
	{name: "controlplane without secretbox", edits: []edit{r("  secretboxEncryptionSecret: {{SECRETBOX}}\n", "")},
		path: "cluster.secretboxEncryptionSecret", msg: "required on controlplane"},

	// Validate: machine network and install.
	{name: "bad cert SAN", edits: []edit{r("- cp1.example.com", "- cp1_example.com")},
		path: "machine.certSANs[0]", at: "cp1_example.com", msg: "not a valid DNS name or IP address"},
	{name: "bad hostname", edits: []edit{r("hostname: cp1", "hostname: CP_1")},
		path: "machine.network.hostname", at: "CP_1", msg: "not a valid hostname"},
	{name: "bad nameserver", edits: []edit{r("- 1.1.1.1", "- 1.1.1.300")},
		path: "machine.network.nameservers[0]", at: "1.1.1.300", msg: "not a valid IP address"},
	{name: "interface name too long", edits: []edit{r("interface: eth0", "interface: enp0s31f6averylongname")},
		path: "machine.network.interfaces[0].interface", at: "averylongname", msg: "not a valid link name"},
	{name: "interface name with slash", edits: []edit{r("interface: eth1", "interface: eth/1")},
		path: "machine.network.interfaces[1].interface", at: "eth/1", msg: "not a valid link name"},
	{name: "interface name missing", edits: []edit{r("      - interface: eth1\n        dhcp: true", "      - dhcp: true")},
		path: "machine.network.interfaces[1].interface", msg: "required"},
	{name: "duplicate interface", edits: []edit{r("interface: eth1", "interface: eth0")},
		path: "machine.network.interfaces[1].interface", at: "- interface: eth0\n        dhcp", msg: `duplicate interface "eth0" (also interfaces[0])`},
	{name: "bad address CIDR", edits: []edit{r("- 10.0.0.10/24", "- 10.0.0.300/24")},
		path: "machine.network.interfaces[0].addresses[0]", at: "10.0.0.300/24", msg: `"10.0.0.300/24" is not a valid CIDR address`},
	{name: "address without prefix length", edits: []edit{r("- 10.0.0.10/24", "- 10.0.0.10")},
		path: "machine.network.interfaces[0].addresses[0]", at: "          - 10.0.0.10\n", msg: "not a valid CIDR address"},
	{name: "bad route network", edits: []edit{r("network: 0.0.0.0/0", "network: default")},
		path: "machine.network.interfaces[0].routes[0].network", at: "network: default", msg: "not a valid CIDR network"},
	{name: "bad gateway", edits: []edit{r("gateway: 10.0.0.1", "gateway: router")},
		path: "machine.network.interfaces[0].routes[0].gateway", at: "gateway: router", msg: "not a valid IP address"},
	{name: "gateway family mismatch", edits: []edit{r("gateway: 10.0.0.1", "gateway: fd00::1")},
		path: "machine.network.interfaces[0].routes[0].gateway", at: "fd00::1", msg: "address family"},
	{name: "negative metric", edits: []edit{r("metric: 1024", "metric: -1")},
		path: "machine.network.interfaces[0].routes[0].metric", at: "metric: -1", msg: "must not be negative"},
	{name: "mtu too small", edits: []edit{r("mtu: 1500", "mtu: 50")},
		path: "machine.network.interfaces[0].mtu", at: "mtu: 50", msg: "68-65535"},
	{name: "mtu too large", edits: []edit{r("mtu: 1500", "mtu: 70000")},
		path: "machine.network.interfaces[0].mtu", at: "mtu: 70000", msg: "out of range"},
	{name: "bad vip", edits: []edit{r("ip: 10.0.0.5", "ip: 10.0.0.256")},
		path: "machine.network.interfaces[0].vip.ip", at: "10.0.0.256", msg: "not a valid IP address"},
	{name: "IPv6 vip", edits: []edit{r("ip: 10.0.0.5", "ip: fd00::5")},
		path: "machine.network.interfaces[0].vip.ip", at: "fd00::5", msg: "only IPv4"},
	{name: "vip ttl below the kernel lifetime bound", edits: []edit{r("          ip: 10.0.0.5", "          ip: 10.0.0.5\n          ttl: 1s")},
		path: "machine.network.interfaces[0].vip.ttl", at: "ttl: 1s", msg: "at least 1.5s"},
	{name: "vip renew interval too long for the ttl", edits: []edit{r("          ip: 10.0.0.5", "          ip: 10.0.0.5\n          renewInterval: 1s")},
		path: "machine.network.interfaces[0].vip.renewInterval", at: "renewInterval: 1s", msg: "quarter of the TTL"},
	{name: "vip on worker", worker: true, edits: []edit{r("        dhcp: true\n", "        dhcp: true\n        vip:\n          ip: 10.0.0.5\n")},
		path: "machine.network.interfaces[0].vip", at: "vip:", msg: "only allowed on controlplane nodes"},
	{name: "relative install disk", worker: true, edits: []edit{r("disk: /dev/nvme0n1", "disk: sda")},
		path: "machine.install.disk", at: "disk: sda", msg: "not a device path under /dev/"},
	{name: "install disk escapes /dev", worker: true, edits: []edit{r("disk: /dev/nvme0n1", "disk: /dev/../etc/passwd")},
		path: "machine.install.disk", at: "disk: /dev/..", msg: "not a device path"},
	{name: "disk and selector", worker: true, edits: []edit{r("disk: /dev/nvme0n1", "disk: /dev/nvme0n1\n    diskSelector: {type: ssd}")},
		path: "machine.install.diskSelector", at: "diskSelector:", msg: "not both"},
	{name: "install bundle not a URL", worker: true, edits: []edit{r("disk: /dev/nvme0n1", "disk: /dev/nvme0n1\n    bundle: /srv/bundle")},
		path: "machine.install.bundle", at: "bundle: /srv/bundle", msg: "not an http(s) URL"},
	{name: "empty selector", worker: true, edits: []edit{r("disk: /dev/nvme0n1", "diskSelector: {}")},
		path: "machine.install.diskSelector", at: "diskSelector:", msg: "set at least one"},
	{name: "selector size", worker: true, edits: []edit{r("disk: /dev/nvme0n1", "diskSelector: {minSize: ten}")},
		path: "machine.install.diskSelector.minSize", at: "minSize: ten", msg: "not a size"},
	{name: "selector range upside down", worker: true, edits: []edit{r("disk: /dev/nvme0n1", "diskSelector: {minSize: 2TB, maxSize: 1TB}")},
		path: "machine.install.diskSelector.maxSize", at: "maxSize: 1TB", msg: "below minSize"},
	{name: "selector type", worker: true, edits: []edit{r("disk: /dev/nvme0n1", "diskSelector: {type: floppy}")},
		path: "machine.install.diskSelector.type", at: "type: floppy", msg: "ssd, hdd or nvme"},
	{name: "selector pattern", worker: true, edits: []edit{r("disk: /dev/nvme0n1", "diskSelector: {model: \"[\"}")},
		path: "machine.install.diskSelector.model", at: "model:", msg: "not a valid pattern"},

	// Validate: cluster.
	{name: "missing cluster name", worker: true, edits: []edit{r("  name: demo\n", "")},
		path: "cluster.name", msg: "required"},
	{name: "bad cluster name", edits: []edit{r("name: demo", "name: Demo.Cluster")},
		path: "cluster.name", at: "Demo.Cluster", msg: "DNS label"},
	{name: "missing endpoint", worker: true, edits: []edit{r("  controlPlane:\n    endpoint: https://api.example.com:6443\n", "")},
		path: "cluster.controlPlane.endpoint", msg: "required"},
	{name: "http endpoint", edits: []edit{r("endpoint: https://10.0.0.5:6443", "endpoint: http://10.0.0.5:6443")},
		path: "cluster.controlPlane.endpoint", at: "endpoint:", msg: "must be an https:// URL"},
	{name: "endpoint without port", edits: []edit{r("endpoint: https://10.0.0.5:6443", "endpoint: https://10.0.0.5")},
		path: "cluster.controlPlane.endpoint", at: "endpoint:", msg: "has no port"},
	{name: "endpoint without scheme", edits: []edit{r("endpoint: https://10.0.0.5:6443", "endpoint: 10.0.0.5:6443")},
		path: "cluster.controlPlane.endpoint", at: "endpoint:"},
	{name: "endpoint with bad port", edits: []edit{r("endpoint: https://10.0.0.5:6443", "endpoint: https://10.0.0.5:99999")},
		path: "cluster.controlPlane.endpoint", at: "endpoint:", msg: "invalid port"},
	{name: "bad dns domain", edits: []edit{r("dnsDomain: cluster.local", "dnsDomain: cluster..local")},
		path: "cluster.network.dnsDomain", at: "dnsDomain", msg: "not a valid DNS domain"},
	{name: "bad pod subnet", edits: []edit{r("- 10.244.0.0/16", "- 10.244.0.0/33")},
		path: "cluster.network.podSubnets[0]", at: "10.244.0.0/33", msg: "not a valid CIDR"},
	{name: "overlapping subnets", edits: []edit{r("- 10.96.0.0/12", "- 10.244.128.0/20")},
		path: "cluster.network.serviceSubnets[0]", at: "10.244.128.0/20", msg: "overlaps podSubnets[0]"},
	{name: "bad kubernetes version", edits: []edit{r("kubernetesVersion: v1.36.3", "kubernetesVersion: latest")},
		path: "cluster.kubernetesVersion", at: "kubernetesVersion", msg: "not a valid Kubernetes version"},
	{name: "bad kubelet version", edits: []edit{r("  kubelet:\n", "  kubelet:\n    version: next\n")},
		path: "machine.kubelet.version", at: "version: next", msg: "not a valid Kubernetes version"},

	// Validate: etcd and components.
	{name: "bad etcd peer port", edits: []edit{r("cp3.example.com:50000", "cp3.example.com:99999")},
		path: "cluster.etcd.peers[1]", at: "cp3.example.com:99999", msg: "invalid port"},
	{name: "bad etcd peer host", edits: []edit{r("- 10.0.0.11", "- http://10.0.0.11")},
		path: "cluster.etcd.peers[0]", at: "http://10.0.0.11", msg: "not a valid host"},
	{name: "negative heartbeat", edits: []edit{r("heartbeatInterval: 100ms", "heartbeatInterval: -1s")},
		path: "cluster.etcd.heartbeatInterval", at: "heartbeatInterval", msg: "must be positive"},
	{name: "election timeout too short", edits: []edit{r("electionTimeout: 1s", "electionTimeout: 300ms")},
		path: "cluster.etcd.electionTimeout", at: "electionTimeout", msg: "at least 5 × heartbeatInterval (500ms)"},
	{name: "quota too large", edits: []edit{r("quotaBackendBytes: 2147483648", "quotaBackendBytes: 9000000000")},
		path: "cluster.etcd.quotaBackendBytes", at: "quotaBackendBytes", msg: "between 0 and 8 GiB"},
	{name: "snapshot interval too short", edits: []edit{r("interval: 1h", "interval: 30s")},
		path: "cluster.etcd.snapshots.interval", at: "interval: 30s", msg: "at least 1m"},
	{name: "snapshot keep zero", edits: []edit{r("keep: 5", "keep: 0")},
		path: "cluster.etcd.snapshots.keep", at: "keep: 0", msg: "at least 1"},
	{name: "extraArgs with dashes", edits: []edit{r(`audit-log-maxage: "30"`, `--audit-log-maxage: "30"`)},
		path: "cluster.apiServer.extraArgs[\"--audit-log-maxage\"]", at: "--audit-log-maxage", msg: "write the flag name without dashes"},
	{name: "extraArgs empty key", edits: []edit{r(`node-cidr-mask-size: "24"`, `"": "24"`)},
		path: "cluster.controllerManager.extraArgs[\"\"]", at: `"": "24"`, msg: "must not be empty"},
	{name: "kubelet owned flag", edits: []edit{r(`      v: "2"`, `      root-dir: /tmp/x`)},
		path: "machine.kubelet.extraArgs.root-dir", at: "root-dir:", msg: "set by Ballast"},
	{name: "kubelet node-role label", edits: []edit{r(`example.com/rack: r12`, `node-role.kubernetes.io/infra: ""`)},
		path: `machine.kubelet.nodeLabels["node-role.kubernetes.io/infra"]`, at: "node-role.kubernetes.io/infra", msg: "may not set"},
	{name: "kubelet bad label value", edits: []edit{r(`zone: zone-a`, `zone: "zone a"`)},
		path: `machine.kubelet.nodeLabels["topology.kubernetes.io/zone"]`, at: "zone a", msg: "not a valid label value"},
	{name: "kubelet bad taint effect", edits: []edit{r(`infra:NoSchedule`, `infra:Never`)},
		path: `machine.kubelet.nodeTaints["example.com/dedicated"]`, at: "infra:Never", msg: "Effect one of"},
	{name: "bad apiServer cert SAN", edits: []edit{r("- api.example.com", "- api example com")},
		path: "cluster.apiServer.certSANs[0]", at: "api example com", msg: "not a valid DNS name or IP address"},
}

func TestMalformedConfigs(t *testing.T) {
	if len(badCases) < 35 {
		t.Fatalf("only %d malformed cases, want at least 35", len(badCases))
	}
	p := getPKI(t)
	for _, tc := range badCases {
		t.Run(tc.name, func(t *testing.T) {
			text := tc.raw
			if text == "" {
				tmpl := controlPlaneTemplate
				if tc.worker {
					tmpl = workerTemplate
				}
				text = applyEdits(t, tmpl, tc.edits)
			}
			wantLine := 0
			if tc.at != "" {
				wantLine = lineOf(t, text, tc.at)
			}
			_, err := Load([]byte(p.render(text)))
			if err == nil {
				t.Fatalf("Load succeeded, want an error at %q", tc.path)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not contain %q", err, tc.msg)
			}
			var de *DecodeError
			var ve *ValidationError
			switch {
			case tc.decode:
				if !errors.As(err, &de) {
					t.Fatalf("got %T (%v), want *DecodeError", err, err)
				}
				if de.Path != tc.path || de.Line != wantLine {
					t.Errorf("got path %q line %d, want path %q line %d (%v)", de.Path, de.Line, tc.path, wantLine, err)
				}
			default:
				if !errors.As(err, &ve) {
					t.Fatalf("got %T (%v), want *ValidationError", err, err)
				}
				if len(ve.Problems) != 1 {
					t.Errorf("got %d problems, want 1: %v", len(ve.Problems), err)
				}
				found := false
				for _, pr := range ve.Problems {
					if pr.Path == tc.path {
						found = true
						if pr.Line != wantLine {
							t.Errorf("%s: line %d, want %d", pr.Path, pr.Line, wantLine)
						}
					}
				}
				if !found {
					t.Errorf("no problem at %q in %v", tc.path, err)
				}
			}
			for _, s := range p.secrets() {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error message leaks a secret: %v", err)
				}
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	text := applyEdits(t, controlPlaneTemplate, []edit{
		r("type: controlplane", "type: master"),
		r("hostname: cp1", "hostname: -cp1"),
		r("- 10.0.0.10/24", "- 10.0.0.300/24"),
		r("mtu: 1500", "mtu: 10"),
		r("- 10.96.0.0/12", "- 10.244.0.0/12"),
		r("electionTimeout: 1s", "electionTimeout: 100ms"),
		r(`audit-log-maxage: "30"`, `-v: "2"`),
	})
	_, err := Load([]byte(getPKI(t).render(text)))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("got %v, want *ValidationError", err)
	}
	want := []Problem{
		{Path: "machine.type", Line: lineOf(t, text, "type: master")},
		{Path: "machine.network.hostname", Line: lineOf(t, text, "-cp1")},
		{Path: "machine.network.interfaces[0].addresses[0]", Line: lineOf(t, text, "10.0.0.300")},
		{Path: "machine.network.interfaces[0].mtu", Line: lineOf(t, text, "mtu: 10")},
		{Path: "cluster.network.serviceSubnets[0]", Line: lineOf(t, text, "10.244.0.0/12")},
		{Path: "cluster.etcd.electionTimeout", Line: lineOf(t, text, "electionTimeout")},
		{Path: "cluster.apiServer.extraArgs[\"-v\"]", Line: lineOf(t, text, "-v:")},
	}
	if len(ve.Problems) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(ve.Problems), len(want), err)
	}
	for i, w := range want {
		got := ve.Problems[i]
		if got.Path != w.Path || got.Line != w.Line {
			t.Errorf("problem %d: got %s (line %d), want %s (line %d)", i, got.Path, got.Line, w.Path, w.Line)
		}
	}
	header := "invalid machine config: 7 problem(s):\n  - machine.type (line 3): \"master\" is not a valid machine type"
	if !strings.HasPrefix(err.Error(), header) {
		t.Errorf("error starts %q, want prefix %q", err.Error()[:min(len(err.Error()), len(header))], header)
	}
}
