// Package config loads, validates, patches and compares Ballast machine
// config documents.
//
// A machine config is a single YAML document (see Config) describing the
// desired state of one node. The package offers:
//
//   - Decode: strict decoding. Unknown fields, wrong types, duplicate keys,
//     empty documents and multi-document streams are rejected with the full
//     field path and source line of the offending value.
//   - Validate: semantic checks that report every problem at once, each with
//     its field path and (when the config came from Decode) its line.
//   - Load: Decode followed by Validate.
//   - ApplyDefaults and WithDefaults: fill in the documented defaults.
//   - Bytes, DeepCopy, Equal and Redact: encoding, copying, comparison and
//     secret-free copies for display.
//   - ApplyPatches: RFC 7396 merge patches and RFC 6902 JSON patches.
//   - Diff and RebootRequired: what changed between two configs, and whether
//     the change can be applied without a reboot.
//
// Every error returned by Decode, Validate and Load matches ErrInvalid with
// errors.Is; use errors.As with *DecodeError or *ValidationError for details.
package config
