package server

import (
	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/pki"
)

var (
	everyone = []string{pki.RoleAdmin, pki.RoleOperator, pki.RoleReader, pki.RoleEtcdBackup}
	readers  = []string{pki.RoleAdmin, pki.RoleOperator, pki.RoleReader}
	changers = []string{pki.RoleAdmin, pki.RoleOperator}
	admins   = []string{pki.RoleAdmin}
	backup   = []string{pki.RoleAdmin, pki.RoleOperator, pki.RoleEtcdBackup}
)

// methodRoles names the roles allowed to call each RPC. A method missing here
// is refused for everyone (fail closed); a test checks every RPC has a row.
var methodRoles = map[string][]string{
	machine.MachineService_Version_FullMethodName:            everyone,
	machine.MachineService_ApplyConfiguration_FullMethodName: admins,
	machine.MachineService_GetConfiguration_FullMethodName:   readers,
	machine.MachineService_ServiceList_FullMethodName:        readers,
	machine.MachineService_ServiceStart_FullMethodName:       changers,
	machine.MachineService_ServiceStop_FullMethodName:        changers,
	machine.MachineService_ServiceRestart_FullMethodName:     changers,
	machine.MachineService_Logs_FullMethodName:               readers,
	machine.MachineService_Dmesg_FullMethodName:              changers,
	machine.MachineService_Reboot_FullMethodName:             changers,
	machine.MachineService_Shutdown_FullMethodName:           changers,
	machine.MachineService_Reset_FullMethodName:              admins,
	machine.MachineService_VIPStatus_FullMethodName:          readers,
	machine.MachineService_Kubeconfig_FullMethodName:         admins,
	machine.MachineService_Containers_FullMethodName:         readers,
	machine.MachineService_NetworkStatus_FullMethodName:      readers,
	machine.MachineService_TimeStatus_FullMethodName:         readers,
	machine.MachineService_Upgrade_FullMethodName:            admins,
	machine.MachineService_Rollback_FullMethodName:           admins,
	machine.MachineService_UpgradeStatus_FullMethodName:      readers,
	machine.MachineService_Events_FullMethodName:             readers,
	machine.MachineService_Processes_FullMethodName:          readers,
	machine.MachineService_Memory_FullMethodName:             readers,
	machine.MachineService_Mounts_FullMethodName:             readers,
	machine.MachineService_Netstat_FullMethodName:            readers,
	machine.MachineService_Usage_FullMethodName:              readers,
	machine.MachineService_SystemStatus_FullMethodName:       readers,
	machine.MachineService_Read_FullMethodName:               changers,
	machine.MachineService_List_FullMethodName:               changers,

	machine.EtcdService_Bootstrap_FullMethodName:             admins,
	machine.EtcdService_Recover_FullMethodName:               admins,
	machine.EtcdService_EtcdMembers_FullMethodName:           readers,
	machine.EtcdService_EtcdStatus_FullMethodName:            readers,
	machine.EtcdService_EtcdLeave_FullMethodName:             admins,
	machine.EtcdService_EtcdRemoveMember_FullMethodName:      admins,
	machine.EtcdService_EtcdForfeitLeadership_FullMethodName: changers,
	machine.EtcdService_EtcdDefrag_FullMethodName:            changers,
	machine.EtcdService_EtcdAlarmList_FullMethodName:         readers,
	machine.EtcdService_EtcdAlarmDisarm_FullMethodName:       changers,
	machine.EtcdService_EtcdSnapshot_FullMethodName:          backup,
	machine.EtcdService_EtcdClientCert_FullMethodName:        admins,
}

// tokenMethods are served on a configured node without a client
// certificate: the handler authenticates the caller by the machine token.
var tokenMethods = map[string]bool{
	machine.CertificateService_SignNodeCertificate_FullMethodName:    true,
	machine.CertificateService_SignKubeletCertificate_FullMethodName: true,
}

// maintenanceMethods are the only RPCs served before the node has a config.
var maintenanceMethods = map[string]bool{
	machine.MachineService_Version_FullMethodName:            true,
	machine.MachineService_ApplyConfiguration_FullMethodName: true,
}

// RolesFor returns the roles allowed to call fullMethod (nil: nobody).
func RolesFor(fullMethod string) []string { return methodRoles[fullMethod] }
