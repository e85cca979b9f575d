// Package machine is the generated Go code of the Ballast machine API
// (machine.proto, etcd.proto): the gRPC services every node serves on port
// 50000 and nodectl calls. Regenerate with `make generate`; never edit the
// *.pb.go files by hand.
package machine
