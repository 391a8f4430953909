// Package whp is the root of the webhooks platform module. It carries the CUE
// definitions (schemas.cue) that every catalog must satisfy, so the binary
// and the tests validate against exactly the file in the repository.
package whp

import _ "embed"

//go:embed schemas.cue
var definitions string

// Definitions returns the source of schemas.cue.
func Definitions() string { return definitions }

// DefinitionsFile is the name errors in Definitions are reported under.
const DefinitionsFile = "schemas.cue"
