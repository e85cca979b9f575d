package nodetools

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/procfs"

	"github.com/ballast-os/ballast/api/machine"
)

// tcpStates are the kernel's TCP states (include/net/tcp_states.h).
var tcpStates = map[uint64]string{1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
	6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}

const tcpListen = 10

// Netstat lists the TCP and UDP sockets of the agent's network namespace
// with the process holding each (among the processes shown).
func (t Tools) Netstat(listening bool) ([]*machine.Socket, error) {
	fs, procs, stats, err := t.procs()
	if err != nil {
		return nil, err
	}
	owner := map[uint64]int{}
	for _, p := range procs {
		targets, err := p.FileDescriptorTargets()
		if err != nil {
			continue
		}
		for _, tg := range targets {
			if s, ok := strings.CutPrefix(tg, "socket:["); ok {
				if inode, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64); err == nil {
					owner[inode] = p.PID
				}
			}
		}
	}
	var out []*machine.Socket
	for _, src := range []struct {
		proto string
		read  func() (procfs.NetTCP, error)
	}{
		{"tcp", fs.NetTCP},
		{"tcp6", fs.NetTCP6},
		// /proc/net/udp has the same lines (NetUDP's element type is NetTCP's).
		{"udp", func() (procfs.NetTCP, error) { u, err := fs.NetUDP(); return procfs.NetTCP(u), err }},
		{"udp6", func() (procfs.NetTCP, error) { u, err := fs.NetUDP6(); return procfs.NetTCP(u), err }},
	} {
		ls, err := src.read()
		if err != nil {
			if src.proto == "tcp6" || src.proto == "udp6" {
				continue // IPv6 disabled
			}
			return nil, fmt.Errorf("read %s sockets: %w", src.proto, err)
		}
		udp := strings.HasPrefix(src.proto, "udp")
		for _, l := range ls {
			if listening && ((!udp && l.St != tcpListen) || (udp && l.RemPort != 0)) {
				continue
			}
			s := &machine.Socket{Protocol: src.proto, Local: hostPort(l.LocalAddr, l.LocalPort),
				Remote: hostPort(l.RemAddr, l.RemPort), Inode: l.Inode}
			if !udp {
				s.State = tcpStates[l.St]
			}
			if pid, ok := owner[l.Inode]; ok && l.Inode != 0 {
				s.Pid, s.Command = int32(pid), stats[pid].Comm
			}
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Protocol != out[j].Protocol {
			return out[i].Protocol < out[j].Protocol
		}
		return out[i].Local < out[j].Local
	})
	return out, nil
}

func hostPort(ip net.IP, port uint64) string {
	return net.JoinHostPort(ip.String(), strconv.FormatUint(port, 10))
}
