package podnetwork

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ballast-os/ballast/hack/netnstest"
)

// cniPath is where Debian's containernetworking-plugins puts the plugins.
const cniPath = "/usr/lib/cni"

// TestBridgeFollowsANewPodCIDR runs Debian's bridge and host-local plugins
// with the config CNIConfig renders: a node whose pod CIDR changes (a
// renamed machine is a new Node with a new CIDR) must still start pods,
// with cni0 moved to the new CIDR's gateway.
func TestBridgeFollowsANewPodCIDR(t *testing.T) {
	netnstest.RequireRoot(t, "it runs the CNI plugins in network namespaces")
	if _, err := os.Stat(filepath.Join(cniPath, "bridge")); err != nil {
		t.Fatalf("the CNI plugins are missing (hack/install-deps.sh test installs containernetworking-plugins): %v", err)
	}
	id := fmt.Sprintf("pnt%d", os.Getpid())
	node := id + "-node"
	ip(t, "netns", "add", node)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", node).Run() })
	dataDir := t.TempDir()

	for i, cidr := range []string{"10.244.3.0/24", "10.244.5.0/24"} {
		pod := fmt.Sprintf("%s-pod%d", id, i)
		ip(t, "netns", "add", pod)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", pod).Run() })
		if out, err := cniAdd(t, node, pod, cidr, dataDir); err != nil {
			t.Fatalf("ADD of a pod in %s: %v\n%s", cidr, err, out)
		}
		gw := strings.TrimSuffix(cidr, "0/24") + "1/24"
		addrs := ip(t, "-n", node, "-4", "-o", "addr", "show", "dev", Bridge)
		if !strings.Contains(addrs, gw) {
			t.Fatalf("cni0 after a pod in %s lacks its gateway %s:\n%s", cidr, gw, addrs)
		}
		if i > 0 && strings.Contains(addrs, "10.244.3.1/") {
			t.Fatalf("cni0 kept the old CIDR's gateway:\n%s", addrs)
		}
	}
}

// cniAdd runs the bridge plugin's ADD, in the node's namespace, for a pod
// namespace, with the plugin config of CNIConfig for cidr.
func cniAdd(t *testing.T, node, pod, cidr, dataDir string) ([]byte, error) {
	t.Helper()
	list, err := CNIConfig([]string{cidr}, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	var l struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(list, &l); err != nil {
		t.Fatal(err)
	}
	conf := l.Plugins[0]
	conf["cniVersion"], conf["name"] = l.CNIVersion, l.Name
	stdin, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net=/run/netns/"+node, filepath.Join(cniPath, "bridge"))
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Env = append(os.Environ(), "CNI_COMMAND=ADD", "CNI_CONTAINERID="+pod, "CNI_NETNS=/run/netns/"+pod,
		"CNI_IFNAME=eth0", "CNI_PATH="+cniPath)
	return cmd.CombinedOutput()
}

func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
