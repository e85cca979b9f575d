package nodectl

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// checkOutput validates -o.
func (g *globals) checkOutput() error {
	switch g.output {
	case "table", "json", "yaml":
		return nil
	}
	return fmt.Errorf("unknown output format %q: use table, json or yaml", g.output)
}

// printStructured writes v (a JSON-able value, proto messages allowed in
// maps) as JSON or YAML.
func (g *globals) printStructured(v any) error {
	data, err := toJSON(v)
	if err != nil {
		return err
	}
	if g.output == "json" {
		_, err = fmt.Fprintln(g.stdout, string(data))
		return err
	}
	var generic any
	if err := json.Unmarshal(data, &generic); err != nil {
		return err
	}
	out, err := yaml.Marshal(generic)
	if err != nil {
		return err
	}
	_, err = g.stdout.Write(out)
	return err
}

// nodeResult is one node's entry in structured output.
type nodeResult struct {
	Node  string          `json:"node"`
	Error string          `json:"error,omitempty"`
	Value json.RawMessage `json:"result,omitempty"`
}

func toJSON(v any) ([]byte, error) {
	if m, ok := v.(proto.Message); ok {
		return protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(m)
	}
	return json.MarshalIndent(v, "", "  ")
}

// printResults prints a fan-out's results in the structured formats.
func printResults[T proto.Message](g *globals, results []result[T]) error {
	out := make([]nodeResult, 0, len(results))
	for _, r := range results {
		nr := nodeResult{Node: r.node}
		if r.err != nil {
			nr.Error = oneLine(explain(r.err, r.node))
		} else {
			data, err := toJSON(r.value)
			if err != nil {
				return err
			}
			nr.Value = data
		}
		out = append(out, nr)
	}
	return g.printStructured(out)
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}
