// Package machines is the cluster's registry of machines, kept in etcd: for
// each node name, the addresses Ballast itself verified for it. A control
// plane records its own (its advertise address and static addresses); the
// control plane that signs a worker's certificates records the worker's
// checked hostname and the address it saw the call come from. The
// kubelet-serving approver trusts these records, never what a kubelet
// reports about itself.
package machines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// keyPrefix holds one key per machine, named by its node name.
const keyPrefix = "/ballast/machines/"

// Roles of a record.
const (
	RoleControlPlane = "controlplane"
	RoleWorker       = "worker"
)

// Record is one machine as Ballast verified it.
type Record struct {
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Addresses []string  `json:"addresses"`
	Updated   time.Time `json:"updated"`
}

// ErrInvalid is returned for a record without a name or address.
var ErrInvalid = errors.New("invalid machine record")

// Put stores r unless the stored record has the same role and addresses
// already (so a control plane that re-asserts itself every resync writes
// nothing).
func Put(ctx context.Context, kv clientv3.KV, r Record) error {
	if r.Name == "" || len(r.Addresses) == 0 {
		return fmt.Errorf("%w: %+v", ErrInvalid, r)
	}
	cur, ok, err := Get(ctx, kv, r.Name)
	if err != nil {
		return err
	}
	if ok && cur.Role == r.Role && slices.Equal(cur.Addresses, r.Addresses) {
		return nil
	}
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, keyPrefix+r.Name, string(data)); err != nil {
		return fmt.Errorf("record machine %s: %w", r.Name, err)
	}
	return nil
}

// Get returns the record of name (false when there is none).
func Get(ctx context.Context, kv clientv3.KV, name string) (Record, bool, error) {
	resp, err := kv.Get(ctx, keyPrefix+name)
	if err != nil {
		return Record{}, false, fmt.Errorf("read machine %s: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return Record{}, false, nil
	}
	var r Record
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
		return Record{}, false, fmt.Errorf("machine %s: %w", name, err)
	}
	return r, true, nil
}

// List returns every record, by name.
func List(ctx context.Context, kv clientv3.KV) ([]Record, error) {
	resp, err := kv.Get(ctx, keyPrefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("list machines: %w", err)
	}
	out := make([]Record, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r Record
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, fmt.Errorf("machine %s: %w", kv.Key, err)
		}
		out = append(out, r)
	}
	return out, nil
}
