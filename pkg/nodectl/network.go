package nodectl

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/client"
)

// networkViews are the `get` subcommands of NetworkStatus: a header and a
// printer of one node's rows each.
var networkViews = []struct {
	use, short, header string
	rows               func(w io.Writer, node string, s *machine.NetworkStatusResponse)
}{
	{"links", "Show the node's network links (state, MTU, hardware address)", "NODE\tLINK\tINDEX\tKIND\tSTATE\tMTU\tHWADDR",
		func(w io.Writer, node string, s *machine.NetworkStatusResponse) {
			for _, l := range s.GetLinks() {
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%d\t%s\n", node, l.GetName(), l.GetIndex(), dash(l.GetKind()), l.GetState(), l.GetMtu(), dash(l.GetHardwareAddr()))
			}
		}},
	{"addresses", "Show the node's addresses and where each comes from (static, dhcp, other)", "NODE\tLINK\tADDRESS\tSOURCE\tVALID",
		func(w io.Writer, node string, s *machine.NetworkStatusResponse) {
			for _, a := range s.GetAddresses() {
				valid := "forever"
				if v := a.GetValidLifetimeSeconds(); v > 0 {
					valid = (time.Duration(v) * time.Second).String()
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", node, a.GetLink(), a.GetAddress(), a.GetSource(), valid)
			}
		}},
	{"routes", "Show the node's routes (protocol: kernel, static, dhcp, ballast-pods …)", "NODE\tDESTINATION\tGATEWAY\tLINK\tPROTOCOL\tMETRIC",
		func(w io.Writer, node string, s *machine.NetworkStatusResponse) {
			for _, r := range s.GetRoutes() {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\n", node, r.GetDestination(), dash(r.GetGateway()), dash(r.GetLink()), r.GetProtocol(), r.GetMetric())
			}
		}},
	{"resolvers", "Show the node's DNS resolvers and where they come from (config or dhcp)", "NODE\tRESOLVERS\tSOURCE",
		func(w io.Writer, node string, s *machine.NetworkStatusResponse) {
			fmt.Fprintf(w, "%s\t%s\t%s\n", node, dash(strings.Join(s.GetResolvers(), ",")), s.GetResolversSource())
		}},
	{"leases", "Show the node's DHCP leases: address, server, state, renewal and expiry", "NODE\tLINK\tADDRESS\tSERVER\tSTATE\tRENEW\tEXPIRES",
		func(w io.Writer, node string, s *machine.NetworkStatusResponse) {
			for _, l := range s.GetLeases() {
				renew, expires := "-", "-"
				if l.GetRenewAt() != nil {
					renew = l.GetRenewAt().AsTime().Local().Format(time.RFC3339)
					expires = l.GetExpires().AsTime().Local().Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", node, l.GetLink(), dash(l.GetAddress()), dash(l.GetServer()), l.GetState(), renew, expires)
			}
		}},
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// newGetNetworkCmds are `get links|addresses|routes|resolvers|leases`.
func newGetNetworkCmds(g *globals) []*cobra.Command {
	var cmds []*cobra.Command
	for _, v := range networkViews {
		cmds = append(cmds, &cobra.Command{
			Use:     v.use,
			Short:   v.short,
			Example: fmt.Sprintf("  nodectl -n 10.5.0.2 get %s\n  nodectl -n 10.5.0.2,10.5.0.3 get %s -o json", v.use, v.use),
			Args:    exactArgs(0, ""),
			RunE: func(cmd *cobra.Command, _ []string) error {
				if err := g.checkOutput(); err != nil {
					return err
				}
				results, err := fanOut(cmd, g, func(ctx context.Context, c *client.Client) (*machine.NetworkStatusResponse, error) {
					return c.NetworkStatus(ctx, &machine.NetworkStatusRequest{})
				})
				if err != nil {
					return err
				}
				tw := newTable(g.stdout)
				if g.output == "table" {
					fmt.Fprintln(tw, v.header)
				}
				err = render(g, results, func(node string, s *machine.NetworkStatusResponse) { v.rows(tw, node, s) })
				_ = tw.Flush()
				return err
			},
		})
	}
	return cmds
}
