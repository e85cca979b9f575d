package config_test

import (
	"errors"
	"fmt"

	"github.com/ballast-os/ballast/pkg/config"
)

func ExampleLoad() {
	_, err := config.Load([]byte(`version: v1alpha1
machine:
  type: worker
  token: abcdef.0123456789abcdef
  network:
    hostname: worker-1
    interfaces:
      - interface: eth0
        addresses:
          - 10.0.0.300/24
        vip:
          ip: 10.0.0.5
cluster:
  name: demo
  controlPlane:
    endpoint: http://10.0.0.5:6443
  token: 123456.abcdefghijklmnop
`))
	fmt.Println(err)

	var ve *config.ValidationError
	if errors.As(err, &ve) {
		fmt.Println(errors.Is(err, config.ErrInvalid), len(ve.Problems), ve.Problems[1].Path, ve.Problems[1].Line)
	}
	// Output:
	// invalid machine config: 5 problem(s):
	//   - machine.ca: required (crt)
	//   - machine.network.interfaces[0].addresses[0] (line 10): "10.0.0.300/24" is not a valid CIDR address (want e.g. 10.0.0.2/24)
	//   - machine.network.interfaces[0].vip (line 11): a VIP is only allowed on controlplane nodes
	//   - cluster.controlPlane.endpoint (line 16): "http://10.0.0.5:6443" must be an https:// URL (e.g. https://10.0.0.5:6443)
	//   - cluster.ca: required (crt)
	// true 5 machine.network.interfaces[0].addresses[0] 10
}

func ExampleDecode() {
	_, err := config.Decode([]byte(`version: v1alpha1
machine:
  network:
    interfaces:
      - interface: eth0
        adress: 10.0.0.2/24
`))
	fmt.Println(err)

	var de *config.DecodeError
	if errors.As(err, &de) {
		fmt.Println(de.Path, de.Line)
	}
	// Output:
	// machine.network.interfaces[0].adress (line 6): unknown field "adress" (did you mean "addresses"?)
	// machine.network.interfaces[0].adress 6
}

func ExampleApplyPatches() {
	doc := []byte(`version: v1alpha1
machine:
  type: worker
  token: abcdef.0123456789abcdef
  ca:
    crt: Y2VydA==
  network:
    hostname: worker-1
cluster:
  name: demo
  controlPlane:
    endpoint: https://10.0.0.5:6443
  token: 123456.abcdefghijklmnop
  ca:
    crt: Y2VydA==
`)
	out, err := config.ApplyPatches(doc, []string{
		"machine: {network: {hostname: worker-2}}",
		`[{"op": "add", "path": "/machine/certSANs", "value": ["10.0.0.7"]}]`,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(config.Diff("a/worker.yaml", doc, "b/worker.yaml", out))
	// Output:
	// --- a/worker.yaml
	// +++ b/worker.yaml
	// @@ -4,8 +4,10 @@
	//    token: abcdef.0123456789abcdef
	//    ca:
	//      crt: Y2VydA==
	// +  certSANs:
	// +    - 10.0.0.7
	//    network:
	// -    hostname: worker-1
	// +    hostname: worker-2
	//  cluster:
	//    name: demo
	//    controlPlane:
}
