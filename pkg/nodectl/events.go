package nodectl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/client"
)

func newEventsCmd(g *globals) *cobra.Command {
	var follow bool
	var since time.Duration
	var tail uint32
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show the node's machine events: configs applied, services, etcd leader and membership, the VIP, certificates, upgrades",
		Long: `Show the machine events each node kept since its agent started (the last
1000), oldest first, then with -f each new one as it happens. With several
nodes every line starts with its node. -o json prints one JSON object per
line (node, id, time, kind, source, message, fields). docs/observability.md
lists the kinds and their fields.`,
		Example: `  nodectl -n 10.5.0.2 events
  nodectl -n 10.5.0.2,10.5.0.3,10.5.0.4 events -f
  nodectl -n 10.5.0.2 events --since 10m --tail 20 -o json`,
		Args: exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.output != "table" && g.output != "json" {
				return fmt.Errorf("events prints lines or JSON lines: use -o table or -o json, not %q", g.output)
			}
			if since < 0 {
				return fmt.Errorf("--since %s: want a positive duration such as 10m", since)
			}
			req := &machine.EventsRequest{Follow: follow, Tail: tail}
			if since > 0 {
				req.Since = timestamppb.New(time.Now().Add(-since))
			}
			var mu sync.Mutex // one line at a time from every node's stream
			results, err := fanOut(cmd, g, func(ctx context.Context, c *client.Client) (struct{}, error) {
				stream, err := c.Events(ctx, req)
				if err != nil {
					return struct{}{}, err
				}
				for {
					ev, err := stream.Recv()
					if err == io.EOF {
						return struct{}{}, nil
					}
					if err != nil {
						if ctx.Err() != nil {
							return struct{}{}, nil // interrupted while following
						}
						return struct{}{}, err
					}
					line, err := g.eventLine(c.Address, ev)
					if err != nil {
						return struct{}{}, err
					}
					mu.Lock()
					_, err = fmt.Fprintln(g.stdout, line)
					mu.Unlock()
					if err != nil {
						return struct{}{}, err
					}
				}
			})
			if err != nil {
				return err
			}
			return reportErrors(g, results)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep streaming new events")
	cmd.Flags().DurationVar(&since, "since", 0, "show only the events of this last while (e.g. 10m; 0: all kept)")
	cmd.Flags().Uint32Var(&tail, "tail", 0, "show at most this many kept events first (0: all kept)")
	return cmd
}

// eventKind is the kind's short name: EVENT_KIND_ETCD_LEADER → etcd-leader.
func eventKind(k machine.EventKind) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k.String(), "EVENT_KIND_")), "_", "-")
}

// eventJSON is an event in -o json, one per line.
type eventJSON struct {
	Node    string            `json:"node"`
	ID      uint64            `json:"id"`
	Time    time.Time         `json:"time"`
	Kind    string            `json:"kind"`
	Source  string            `json:"source"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
}

// eventLine renders one event: a JSON line, or time, kind, source, message
// and the fields sorted by key (after the node when several are asked).
func (g *globals) eventLine(node string, ev *machine.Event) (string, error) {
	at := ev.GetTime().AsTime().UTC()
	if g.output == "json" {
		data, err := json.Marshal(eventJSON{Node: node, ID: ev.GetId(), Time: at, Kind: eventKind(ev.GetKind()),
			Source: ev.GetSource(), Message: ev.GetMessage(), Fields: ev.GetFields()})
		return string(data), err
	}
	var b strings.Builder
	if len(g.nodes) > 1 {
		b.WriteString(node + "  ")
	}
	fmt.Fprintf(&b, "%s  %-14s %-14s %s", at.Format("2006-01-02T15:04:05.000Z"), eventKind(ev.GetKind()), ev.GetSource(), ev.GetMessage())
	keys := make([]string, 0, len(ev.GetFields()))
	for k := range ev.GetFields() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if v := ev.GetFields()[k]; v != "" {
			fmt.Fprintf(&b, " %s=%s", k, v)
		}
	}
	return b.String(), nil
}
