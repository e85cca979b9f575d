package nodectl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/atomicfile"
	"github.com/ballast-os/ballast/pkg/client"
	"github.com/ballast-os/ballast/pkg/units"
)

func etcdClient(c *client.Client) machine.EtcdServiceClient {
	return machine.NewEtcdServiceClient(c.Conn())
}

func newBootstrapCmd(g *globals) *cobra.Command {
	var recoverFrom string
	var force bool
	cmd := &cobra.Command{
		Use:         "bootstrap",
		Short:       "Create the etcd cluster on one control-plane node (or recover it from a snapshot)",
		Annotations: map[string]string{annotationControlPlane: "true"},
		Long: `Create the etcd cluster on exactly one control-plane node. Every other control-plane
node joins it by itself. Refused when the node already has etcd data, is already a
member, or a cluster already answers among its peers.

With --recover-from the snapshot is restored on this node as a new one-member
cluster; the other control-plane nodes notice, wipe their stale data and join it.`,
		Example: `  nodectl -n 10.5.0.2 bootstrap
  nodectl -n 10.5.0.2 bootstrap --recover-from etcd.snapshot`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(g.nodes) > 1 {
				return errors.New("bootstrap acts on exactly one node: pass a single -n")
			}
			if recoverFrom != "" {
				st, err := os.Stat(recoverFrom)
				if err != nil {
					return fmt.Errorf("snapshot: %w", err)
				}
				if !st.Mode().IsRegular() || st.Size() == 0 {
					return fmt.Errorf("snapshot %s is empty or not a regular file", recoverFrom)
				}
			}
			results, err := fanOut(cmd, g, func(ctx context.Context, c *client.Client) (*machine.BootstrapResponse, error) {
				if recoverFrom == "" {
					return etcdClient(c).Bootstrap(ctx, &machine.BootstrapRequest{})
				}
				return uploadSnapshot(ctx, etcdClient(c), recoverFrom, force)
			})
			if err != nil {
				return err
			}
			for _, r := range results {
				if r.err == nil {
					fmt.Fprintf(g.stdout, "%s: %s\n", r.node, r.value.GetMessage())
				}
			}
			return reportErrors(g, results)
		},
	}
	cmd.Flags().StringVar(&recoverFrom, "recover-from", "", "restore this etcd snapshot instead of starting empty")
	cmd.Flags().BoolVar(&force, "force", false, "with --recover-from: recover even though the node's cluster still has quorum")
	return cmd
}

func newEtcdCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "etcd", Short: "Inspect and manage the etcd cluster (control-plane nodes)",
		Annotations: map[string]string{annotationControlPlane: "true"}}
	cmd.AddCommand(
		&cobra.Command{
			Use: "members", Short: "List the etcd members", Example: "  nodectl -n 10.5.0.2 etcd members",
			Args: exactArgs(0, ""),
			RunE: func(cmd *cobra.Command, _ []string) error {
				if err := g.checkOutput(); err != nil {
					return err
				}
				results, err := fanOut(cmd, g, func(ctx context.Context, c *client.Client) (*machine.EtcdMembersResponse, error) {
					return etcdClient(c).EtcdMembers(ctx, &machine.EtcdMembersRequest{})
				})
				if err != nil {
					return err
				}
				tw := newTable(g.stdout)
				defer tw.Flush()
				if g.output == "table" {
					fmt.Fprintln(tw, "NODE\tID\tNAME\tPEER URLS\tCLIENT URLS\tLEARNER\tSTARTED")
				}
				return render(g, results, func(node string, v *machine.EtcdMembersResponse) {
					for _, m := range v.GetMembers() {
						fmt.Fprintf(tw, "%s\t%x\t%s\t%s\t%s\t%t\t%t\n", node, m.GetId(), m.GetName(),
							strings.Join(m.GetPeerUrls(), ","), strings.Join(m.GetClientUrls(), ","), m.GetIsLearner(), m.GetStarted())
					}
				})
			},
		},
		&cobra.Command{
			Use: "status", Short: "Show each node's member status (leader, term, index, DB size)",
			Example: "  nodectl -n 10.5.0.2,10.5.0.3,10.5.0.4 etcd status",
			Args:    exactArgs(0, ""),
			RunE: func(cmd *cobra.Command, _ []string) error {
				if err := g.checkOutput(); err != nil {
					return err
				}
				results, err := fanOut(cmd, g, func(ctx context.Context, c *client.Client) (*machine.EtcdStatusResponse, error) {
					return etcdClient(c).EtcdStatus(ctx, &machine.EtcdStatusRequest{})
				})
				if err != nil {
					return err
				}
				tw := newTable(g.stdout)
				defer tw.Flush()
				if g.output == "table" {
					fmt.Fprintln(tw, "NODE\tMEMBER\tLEADER\tTERM\tINDEX\tAPPLIED\tDB SIZE\tIN USE\tLEARNER\tERRORS")
				}
				return render(g, results, func(node string, s *machine.EtcdStatusResponse) {
					fmt.Fprintf(tw, "%s\t%x\t%x\t%d\t%d\t%d\t%s\t%s\t%t\t%s\n", node, s.GetMemberId(), s.GetLeader(), s.GetRaftTerm(),
						s.GetRaftIndex(), s.GetRaftAppliedIndex(), humanBytes(s.GetDbSize()), humanBytes(s.GetDbSizeInUse()), s.GetIsLearner(), strings.Join(s.GetErrors(), "; "))
				})
			},
		},
		etcdActionCmd(g, "leave", "Remove this node from the etcd cluster, stop etcd and wipe its data", "  nodectl -n 10.5.0.4 etcd leave", true,
			func(ctx context.Context, c *client.Client, force bool) (string, error) {
				_, err := etcdClient(c).EtcdLeave(ctx, &machine.EtcdLeaveRequest{Force: force})
				return "left the etcd cluster (reboot the node to join again)", err
			}),
		newRemoveMemberCmd(g),
		etcdActionCmd(g, "forfeit-leadership", "Move etcd leadership away from this node", "  nodectl -n 10.5.0.2 etcd forfeit-leadership", false,
			func(ctx context.Context, c *client.Client, _ bool) (string, error) {
				resp, err := etcdClient(c).EtcdForfeitLeadership(ctx, &machine.EtcdForfeitLeadershipRequest{})
				if err != nil || resp.GetNewLeader() == 0 {
					return "not the leader; nothing to do", err
				}
				return fmt.Sprintf("leadership moved to %x", resp.GetNewLeader()), nil
			}),
		etcdActionCmd(g, "defrag", "Defragment this node's etcd member", "  nodectl -n 10.5.0.2 etcd defrag", false,
			func(ctx context.Context, c *client.Client, _ bool) (string, error) {
				_, err := etcdClient(c).EtcdDefrag(ctx, &machine.EtcdDefragRequest{})
				return "defragmented", err
			}),
		newAlarmCmd(g), newSnapshotCmd(g), newClientCertCmd(g),
	)
	return cmd
}

// etcdActionCmd builds a command that fans out one simple etcd action.
func etcdActionCmd(g *globals, use, short, example string, withForce bool, do func(context.Context, *client.Client, bool) (string, error)) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use: use, Short: short, Example: example, Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			results, err := fanOut(cmd, g, func(ctx context.Context, c *client.Client) (string, error) { return do(ctx, c, force) })
			if err != nil {
				return err
			}
			for _, r := range results {
				if r.err == nil {
					fmt.Fprintf(g.stdout, "%s: %s\n", r.node, r.value)
				}
			}
			return reportErrors(g, results)
		},
	}
	if withForce {
		cmd.Flags().BoolVar(&force, "force", false, "skip the quorum guard")
	}
	return cmd
}

func newRemoveMemberCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "remove-member ID",
		Short:   "Remove a member by its hex ID (see 'etcd members'), guarded against losing quorum",
		Example: "  nodectl -n 10.5.0.2 etcd remove-member 8e9e05c52164694d",
		Args:    exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(strings.TrimPrefix(args[0], "0x"), 16, 64)
			if err != nil {
				return fmt.Errorf("member ID %q is not hexadecimal (copy it from 'nodectl etcd members')", args[0])
			}
			if len(g.nodes) > 1 {
				return errors.New("remove-member acts through one node: pass a single -n")
			}
			results, err := fanOut(cmd, g, func(ctx context.Context, c *client.Client) (*machine.EtcdRemoveMemberResponse, error) {
				return etcdClient(c).EtcdRemoveMember(ctx, &machine.EtcdRemoveMemberRequest{Id: id, Force: force})
			})
			if err != nil {
				return err
			}
			for _, r := range results {
				if r.err == nil {
					fmt.Fprintf(g.stdout, "removed member %x\n", id)
				}
			}
			return reportErrors(g, results)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "skip the quorum guard")
	return cmd
}

func newAlarmCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "alarm", Short: "List or disarm etcd alarms (NOSPACE, CORRUPT)"}
	show := func(do func(context.Context, machine.EtcdServiceClient) (*machine.EtcdAlarmListResponse, error)) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			results, err := fanOut(cmd, g, func(ctx context.Context, c *client.Client) (*machine.EtcdAlarmListResponse, error) {
				return do(ctx, etcdClient(c))
			})
			if err != nil {
				return err
			}
			for _, r := range results {
				if r.err != nil {
					continue
				}
				if len(r.value.GetAlarms()) == 0 {
					fmt.Fprintf(g.stdout, "%s: no alarms\n", r.node)
				}
				for _, a := range r.value.GetAlarms() {
					fmt.Fprintf(g.stdout, "%s: member %x: %s\n", r.node, a.GetMemberId(), a.GetAlarm())
				}
			}
			return reportErrors(g, results)
		}
	}
	cmd.AddCommand(
		&cobra.Command{Use: "list", Short: "List alarms", Example: "  nodectl -n 10.5.0.2 etcd alarm list", Args: exactArgs(0, ""),
			RunE: show(func(ctx context.Context, c machine.EtcdServiceClient) (*machine.EtcdAlarmListResponse, error) {
				return c.EtcdAlarmList(ctx, &machine.EtcdAlarmListRequest{})
			})},
		&cobra.Command{Use: "disarm", Short: "Disarm every alarm (lists what was cleared)", Example: "  nodectl -n 10.5.0.2 etcd alarm disarm", Args: exactArgs(0, ""),
			RunE: show(func(ctx context.Context, c machine.EtcdServiceClient) (*machine.EtcdAlarmListResponse, error) {
				return c.EtcdAlarmDisarm(ctx, &machine.EtcdAlarmDisarmRequest{})
			})},
	)
	return cmd
}

func newSnapshotCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "snapshot FILE",
		Short:   "Stream a consistent etcd snapshot into FILE (allowed for os:etcd:backup)",
		Example: "  nodectl -n 10.5.0.2 etcd snapshot etcd.snapshot",
		Args:    exactArgs(1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(g.nodes) > 1 {
				return errors.New("snapshot reads one node: pass a single -n")
			}
			path := args[0]
			results, err := fanOut(cmd, g, func(ctx context.Context, c *client.Client) (int, error) {
				stream, err := etcdClient(c).EtcdSnapshot(ctx, &machine.EtcdSnapshotRequest{})
				if err != nil {
					return 0, err
				}
				// Streamed to a temporary file and renamed into place once
				// complete: memory stays bounded, and a broken stream
				// leaves an earlier file at path whole.
				var n int64
				err = atomicfile.WriteWith(path, 0o600, func(w io.Writer) error {
					for {
						chunk, err := stream.Recv()
						if err == io.EOF {
							break
						}
						if err != nil {
							return err
						}
						m, err := w.Write(chunk.GetData())
						n += int64(m)
						if err != nil {
							return err
						}
					}
					if n == 0 {
						return errors.New("the node sent an empty snapshot")
					}
					return nil
				})
				return int(n), err
			})
			if err != nil {
				return err
			}
			for _, r := range results {
				if r.err == nil {
					fmt.Fprintf(g.stdout, "snapshot of %s written to %s (%s)\n", r.node, path, humanBytes(int64(r.value)))
				}
			}
			return reportErrors(g, results)
		},
	}
}

func newClientCertCmd(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "client-cert",
		Short: "Write ca.crt, client.crt and client.key for stock etcdctl (os:admin)",
		Example: `  nodectl -n 10.5.0.2 etcd client-cert --output-dir ./etcd-pki
  etcdctl --endpoints https://10.5.0.2:2379 --cacert etcd-pki/ca.crt --cert etcd-pki/client.crt --key etcd-pki/client.key member list`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return errors.New("--output-dir is required")
			}
			if len(g.nodes) > 1 {
				return errors.New("client-cert asks one node: pass a single -n")
			}
			results, err := fanOut(cmd, g, func(ctx context.Context, c *client.Client) (*machine.EtcdClientCertResponse, error) {
				return etcdClient(c).EtcdClientCert(ctx, &machine.EtcdClientCertRequest{})
			})
			if err != nil {
				return err
			}
			for _, r := range results {
				if r.err != nil {
					continue
				}
				if err := os.MkdirAll(dir, 0o700); err != nil {
					return err
				}
				for name, data := range map[string][]byte{"ca.crt": r.value.GetCa(), "client.crt": r.value.GetCrt(), "client.key": r.value.GetKey()} {
					if err := atomicfile.Write(filepath.Join(dir, name), data, 0o600); err != nil {
						return err
					}
				}
				fmt.Fprintf(g.stdout, "wrote %s/{ca.crt,client.crt,client.key}; endpoints: %s\n", dir, strings.Join(r.value.GetEndpoints(), ","))
			}
			return reportErrors(g, results)
		},
	}
	cmd.Flags().StringVar(&dir, "output-dir", "", "directory for the files (required)")
	return cmd
}

func humanBytes(n int64) string { return units.Bytes(uint64(max(n, 0))) }

// uploadSnapshot streams the snapshot file at path to a node's Recover RPC
// in 1 MiB chunks, never holding the whole file in memory.
func uploadSnapshot(ctx context.Context, c machine.EtcdServiceClient, path string, force bool) (*machine.BootstrapResponse, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	defer f.Close()
	stream, err := c.Recover(ctx)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 1<<20)
	for first := true; ; first = false {
		n, rerr := io.ReadFull(f, buf)
		if n > 0 || first {
			if err := stream.Send(&machine.RecoverRequest{Force: force, Data: buf[:n]}); err != nil {
				// The server ended the stream: its status says why.
				if _, serr := stream.CloseAndRecv(); serr != nil {
					return nil, serr
				}
				return nil, err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("read snapshot: %w", rerr)
		}
	}
	return stream.CloseAndRecv()
}
