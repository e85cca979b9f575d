package podnetwork

import (
	"encoding/json"
	"testing"
)

func TestCNIConfig(t *testing.T) {
	data, err := CNIConfig([]string{"10.244.3.0/24"}, "/state/cni")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		CNIVersion string `json:"cniVersion"`
		Plugins    []struct {
			Type   string `json:"type"`
			IPMasq bool   `json:"ipMasq"`
			IPAM   struct {
				Ranges  [][]map[string]string `json:"ranges"`
				DataDir string                `json:"dataDir"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Plugins) != 1 || c.Plugins[0].Type != "bridge" || c.Plugins[0].IPMasq ||
		c.Plugins[0].IPAM.Ranges[0][0]["subnet"] != "10.244.3.0/24" || c.Plugins[0].IPAM.DataDir != "/state/cni" {
		t.Fatalf("CNI config:\n%s", data)
	}
}
