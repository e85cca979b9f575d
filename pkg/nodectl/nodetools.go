package nodectl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/client"
	"github.com/ballast-os/ballast/pkg/units"
)

// newNodeToolCmds are the node tools: processes, memory, mounts, netstat,
// usage, read, list (docs/observability.md).
func newNodeToolCmds(g *globals) []*cobra.Command {
	var listening bool
	netstat := toolCmd(g, "netstat", "Show the node's TCP and UDP sockets with the process holding each (container mode: the node's network namespace)",
		`  nodectl -n 10.5.0.2 netstat
  nodectl -n 10.5.0.2 netstat --listening -o json`,
		func(ctx context.Context, c *client.Client, args []string) (*machine.NetstatResponse, error) {
			return c.Netstat(ctx, &machine.NetstatRequest{Listening: listening})
		},
		"PROTO\tLOCAL\tREMOTE\tSTATE\tPID\tCOMMAND",
		func(node string, r *machine.NetstatResponse) []string {
			var rows []string
			for _, s := range r.GetSockets() {
				rows = append(rows, fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", s.GetProtocol(), s.GetLocal(), s.GetRemote(), dash(s.GetState()),
					pidText(s.GetPid()), dash(s.GetCommand())))
			}
			return rows
		})
	netstat.Flags().BoolVarP(&listening, "listening", "l", false, "only listening TCP and unconnected UDP sockets")
	return []*cobra.Command{
		toolCmd(g, "processes", "List the node's processes: PID, parent, state, CPU time, resident memory, command line (container mode: the agent's own tree)",
			`  nodectl -n 10.5.0.2 processes
  nodectl -n 10.5.0.2 processes -o json`,
			func(ctx context.Context, c *client.Client, args []string) (*machine.ProcessesResponse, error) {
				return c.Processes(ctx, &machine.ProcessesRequest{})
			},
			"PID\tPPID\tSTATE\tTHREADS\tCPU\tRSS\tCOMMAND",
			func(node string, r *machine.ProcessesResponse) []string {
				var rows []string
				for _, p := range r.GetProcesses() {
					cmdline := strings.Join(p.GetArgs(), " ")
					if cmdline == "" {
						cmdline = "[" + p.GetCommand() + "]"
					}
					if len(cmdline) > 120 {
						cmdline = cmdline[:117] + "..."
					}
					rows = append(rows, fmt.Sprintf("%d\t%d\t%s\t%d\t%s\t%s\t%s", p.GetPid(), p.GetPpid(), p.GetState(), p.GetThreads(),
						(time.Duration(p.GetCpuSeconds()*1e9)).Round(10*time.Millisecond), bytesText(p.GetResidentBytes()), cmdline))
				}
				return rows
			}),
		toolCmd(g, "memory", "Show the node's memory: total, free, available, buffers, cache, swap",
			`  nodectl -n 10.5.0.2,10.5.0.3 memory`,
			func(ctx context.Context, c *client.Client, args []string) (*machine.MemoryResponse, error) {
				return c.Memory(ctx, &machine.MemoryRequest{})
			},
			"TOTAL\tFREE\tAVAILABLE\tBUFFERS\tCACHED\tSHMEM\tSWAP TOTAL\tSWAP FREE",
			func(node string, m *machine.MemoryResponse) []string {
				return []string{fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", bytesText(m.GetTotalBytes()), bytesText(m.GetFreeBytes()),
					bytesText(m.GetAvailableBytes()), bytesText(m.GetBuffersBytes()), bytesText(m.GetCachedBytes()), bytesText(m.GetShmemBytes()),
					bytesText(m.GetSwapTotalBytes()), bytesText(m.GetSwapFreeBytes()))}
			}),
		toolCmd(g, "mounts", "List the node's mounts with their filesystems' size, used and available space",
			`  nodectl -n 10.5.0.2 mounts`,
			func(ctx context.Context, c *client.Client, args []string) (*machine.MountsResponse, error) {
				return c.Mounts(ctx, &machine.MountsRequest{})
			},
			"SOURCE\tTARGET\tTYPE\tSIZE\tUSED\tAVAILABLE",
			func(node string, r *machine.MountsResponse) []string {
				var rows []string
				for _, m := range r.GetMounts() {
					rows = append(rows, fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", m.GetSource(), m.GetTarget(), m.GetFstype(),
						bytesText(m.GetSizeBytes()), bytesText(m.GetUsedBytes()), bytesText(m.GetAvailableBytes())))
				}
				return rows
			}),
		netstat,
		toolCmd(g, "usage", "Show the disk usage of STATE and EPHEMERAL: their filesystems and the bytes under each of their directories",
			`  nodectl -n 10.5.0.2 usage`,
			func(ctx context.Context, c *client.Client, args []string) (*machine.UsageResponse, error) {
				return c.Usage(ctx, &machine.UsageRequest{})
			},
			"NAME\tBYTES\tFILES\tPATH",
			func(node string, r *machine.UsageResponse) []string {
				var rows []string
				for _, f := range r.GetFilesystems() {
					rows = append(rows, fmt.Sprintf("%s (filesystem)\t%s of %s used, %s free\t-\t%s", f.GetSource(), bytesText(f.GetUsedBytes()),
						bytesText(f.GetSizeBytes()), bytesText(f.GetAvailableBytes()), f.GetTarget()))
				}
				for _, d := range r.GetDirectories() {
					rows = append(rows, fmt.Sprintf("%s\t%s\t%d\t%s", d.GetName(), bytesText(d.GetBytes()), d.GetFiles(), d.GetPath()))
				}
				return rows
			}),
		toolCmd(g, "list PATH", "List a directory of the node under /proc, /sys or the agent's log directory (os:admin, os:operator)",
			`  nodectl -n 10.5.0.2 list /sys/class/net
  nodectl -n 10.5.0.2 list /proc/self/fd -o json`,
			func(ctx context.Context, c *client.Client, args []string) (*machine.ListResponse, error) {
				return c.List(ctx, &machine.ListRequest{Path: args[0]})
			},
			"MODE\tSIZE\tMODIFIED\tNAME",
			func(node string, r *machine.ListResponse) []string {
				var rows []string
				for _, f := range r.GetFiles() {
					name := f.GetName()
					if f.GetDirectory() {
						name += "/"
					}
					rows = append(rows, fmt.Sprintf("%s\t%d\t%s\t%s", f.GetMode(), f.GetSize(), f.GetModified().AsTime().UTC().Format(time.RFC3339), name))
				}
				return rows
			}),
		newReadCmd(g),
	}
}

// toolCmd is a node tool: one call per node, a table (node first when
// several are asked) or -o json|yaml.
func toolCmd[T proto.Message](g *globals, use, short, example string, call func(context.Context, *client.Client, []string) (T, error),
	header string, rows func(node string, v T) []string) *cobra.Command {
	name, arg, _ := strings.Cut(use, " ")
	return &cobra.Command{
		Use:     use,
		Short:   short,
		Example: example,
		Args:    exactArgs(map[bool]int{true: 1, false: 0}[arg != ""], arg),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			results, err := fanOut(cmd, g, func(ctx context.Context, c *client.Client) (T, error) { return call(ctx, c, args) })
			if err != nil {
				return err
			}
			tw := newTable(g.stdout)
			many := len(results) > 1
			if g.output == "table" {
				if many {
					fmt.Fprint(tw, "NODE\t")
				}
				fmt.Fprintln(tw, header)
			}
			err = render(g, results, func(node string, v T) {
				for _, r := range rows(node, v) {
					if many {
						r = node + "\t" + r
					}
					fmt.Fprintln(tw, r)
				}
			})
			_ = tw.Flush()
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		},
	}
}

func newReadCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "read PATH",
		Short: "Print a file of the node under /proc, /sys or the agent's log directory (os:admin, os:operator; at most 16 MiB)",
		Example: `  nodectl -n 10.5.0.2 read /proc/loadavg
  nodectl -n 10.5.0.2 read /sys/class/net/eth0/address`,
		Args: exactArgs(1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var mu sync.Mutex // one node's file at a time
			results, err := fanOut(cmd, g, func(ctx context.Context, c *client.Client) (struct{}, error) {
				stream, err := c.Read(ctx, &machine.ReadRequest{Path: args[0]})
				if err != nil {
					return struct{}{}, err
				}
				var b strings.Builder
				for {
					chunk, err := stream.Recv()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						return struct{}{}, err
					}
					b.Write(chunk.GetData())
				}
				mu.Lock()
				defer mu.Unlock()
				if len(g.nodes) > 1 {
					fmt.Fprintf(g.stdout, "# node %s\n", c.Address)
				}
				_, err = io.WriteString(g.stdout, b.String())
				return struct{}{}, err
			})
			if err != nil {
				return err
			}
			return reportErrors(g, results)
		},
	}
}

func pidText(pid int32) string {
	if pid == 0 {
		return "-"
	}
	return fmt.Sprint(pid)
}

// bytesText renders a byte count.
func bytesText(n uint64) string { return units.Bytes(n) }
