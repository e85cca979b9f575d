package server

import (
	"testing"

	"google.golang.org/grpc"

	"github.com/ballast-os/ballast/api/machine"
)

// TestEveryRPCHasRoles keeps the role table complete: a new RPC without a
// row would be refused for everyone, which a test should say first.
func TestEveryRPCHasRoles(t *testing.T) {
	for _, desc := range []grpc.ServiceDesc{machine.MachineService_ServiceDesc, machine.EtcdService_ServiceDesc, machine.CertificateService_ServiceDesc} {
		var names []string
		for _, m := range desc.Methods {
			names = append(names, m.MethodName)
		}
		for _, s := range desc.Streams {
			names = append(names, s.StreamName)
		}
		for _, n := range names {
			full := "/" + desc.ServiceName + "/" + n
			if len(RolesFor(full)) == 0 && !tokenMethods[full] {
				t.Errorf("%s has no roles", full)
			}
		}
	}
	for m := range maintenanceMethods {
		if len(RolesFor(m)) == 0 {
			t.Errorf("maintenance method %s is not a known RPC", m)
		}
	}
}
