package server

import (
	"testing"

	"github.com/ballast-os/ballast/api/machine"
)

// TestEveryRPCHasRoles keeps the role table complete: a new RPC without a
// row would be refused for everyone, which a test should say first.
func TestEveryRPCHasRoles(t *testing.T) {
	for _, m := range machine.MachineService_ServiceDesc.Methods {
		full := "/" + machine.MachineService_ServiceDesc.ServiceName + "/" + m.MethodName
		if len(RolesFor(full)) == 0 {
			t.Errorf("%s has no roles", full)
		}
	}
	for _, s := range machine.MachineService_ServiceDesc.Streams {
		full := "/" + machine.MachineService_ServiceDesc.ServiceName + "/" + s.StreamName
		if len(RolesFor(full)) == 0 {
			t.Errorf("%s has no roles", full)
		}
	}
	for m := range maintenanceMethods {
		if len(RolesFor(m)) == 0 {
			t.Errorf("maintenance method %s is not a known RPC", m)
		}
	}
}
