package nodectl

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/client"
)

// newGetTimeCmd is `get time`: each node's clock, its NTP server and offset.
func newGetTimeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "time",
		Short: "Show each node's clock: NTP server, offset, sync state (metal sets the clock; container mode only measures)",
		Example: `  nodectl -n 10.5.0.2 get time
  nodectl -n 10.5.0.2,10.5.0.3 get time -o json`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			results, err := fanOut(cmd, g, func(ctx context.Context, c *client.Client) (*machine.TimeStatusResponse, error) {
				return c.TimeStatus(ctx, &machine.TimeStatusRequest{})
			})
			if err != nil {
				return err
			}
			tw := newTable(g.stdout)
			if g.output == "table" {
				fmt.Fprintln(tw, "NODE\tNOW\tSTATE\tSERVER\tOFFSET\tRTT\tLAST SYNC\tSTEPPED\tSETS CLOCK")
			}
			err = render(g, results, func(node string, s *machine.TimeStatusResponse) {
				state := "synced"
				if !s.GetSynced() {
					state = "unsynced: " + dash(s.GetError())
				}
				last := "-"
				if s.GetLastSync() != nil {
					last = s.GetLastSync().AsTime().Local().Format(time.RFC3339)
				}
				server := s.GetServer()
				if server == "" {
					server = strings.Join(s.GetServers(), ",")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%v\n", node, s.GetNow().AsTime().Local().Format(time.RFC3339), state, dash(server),
					s.GetOffset().AsDuration().Round(time.Millisecond), s.GetRtt().AsDuration().Round(time.Microsecond), last,
					s.GetStepped().AsDuration().Round(time.Millisecond), s.GetSetsClock())
			})
			_ = tw.Flush()
			return err
		},
	}
}
