// Package logs captures the output of machined services.
//
// A Buffer is an io.Writer that splits what is written into lines, keeps the
// most recent lines in memory for Tail and Follow (the API's "logs" call),
// and optionally appends them to a size-rotated file on disk.
package logs
