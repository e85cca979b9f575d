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
// nothing). An address is the latest verified claim's: r's addresses are
// taken from other records — from workers only when r is a worker (a
// renamed machine, a lease handed to another machine), from any record
// when r is a control plane recording itself. A record left without an
// address is deleted.
func Put(ctx context.Context, kv clientv3.KV, r Record) error {
	if r.Name == "" || len(r.Addresses) == 0 {
		return fmt.Errorf("%w: %+v", ErrInvalid, r)
	}
	all, err := List(ctx, kv)
	if err != nil {
		return err
	}
	same := false
	for _, o := range all {
		switch {
		case o.Name == r.Name:
			same = o.Role == r.Role && slices.Equal(o.Addresses, r.Addresses)
		case r.Role == RoleWorker && o.Role != RoleWorker:
		default:
			if err := release(ctx, kv, o, r.Addresses); err != nil {
				return err
			}
		}
	}
	if same {
		return nil
	}
	return put(ctx, kv, r)
}

// release drops addrs from o, deleting o when it has none left.
func release(ctx context.Context, kv clientv3.KV, o Record, addrs []string) error {
	kept := slices.DeleteFunc(slices.Clone(o.Addresses), func(a string) bool { return slices.Contains(addrs, a) })
	switch {
	case len(kept) == len(o.Addresses):
		return nil
	case len(kept) == 0:
		if _, err := kv.Delete(ctx, keyPrefix+o.Name); err != nil {
			return fmt.Errorf("forget machine %s: %w", o.Name, err)
		}
		return nil
	}
	o.Addresses = kept
	return put(ctx, kv, o)
}

func put(ctx context.Context, kv clientv3.KV, r Record) error {
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

// Delete forgets the record of name (nothing when there is none).
func Delete(ctx context.Context, kv clientv3.KV, name string) error {
	if _, err := kv.Delete(ctx, keyPrefix+name); err != nil {
		return fmt.Errorf("forget machine %s: %w", name, err)
	}
	return nil
}
