package catalog

import (
	"bytes"
	"fmt"
)

// CheckPublished reports each schema version of base that head changes: a
// version, once published, never changes (its payload and sensitivity are
// what partners built against); a change is a new version. Description,
// owner, status and topic settings may change. Removing a version is
// allowed: the reconciler makes it INACTIVE.
func CheckPublished(base, head *Catalog, baseName string) Problems {
	var ps Problems
	for _, h := range head.Schemas {
		b := base.Schema(h.ID())
		if b == nil {
			continue
		}
		at := fmt.Sprintf("schemas.%s.%s.%s", pathString([]string{h.Domain}), pathString([]string{h.Event}), pathString([]string{h.Version}))
		if !bytes.Equal(b.JSONSchema, h.JSONSchema) {
			ps = append(ps, Problem{Pos: h.Pos, Message: fmt.Sprintf(
				"%s: version %s is published (in %s) and its payload changed; a published version never changes: add version %d instead",
				at, h.Version, baseName, nextVersion(head, h))})
		}
		if b.ContainsSensitive != h.ContainsSensitive {
			ps = append(ps, Problem{Pos: h.Pos, Message: fmt.Sprintf(
				"%s: version %s is published (in %s) and its contains_sensitive changed from %v to %v; add a new version instead",
				at, h.Version, baseName, b.ContainsSensitive, h.ContainsSensitive)})
		}
	}
	return ps.sorted()
}

// nextVersion is the version number after the highest of h's event.
func nextVersion(c *Catalog, h *Schema) int {
	highest := 0
	for _, s := range c.Schemas {
		if s.Domain == h.Domain && s.Event == h.Event {
			highest = max(highest, versionNumber(s))
		}
	}
	return highest + 1
}
