package catalog

import (
	"fmt"
	"sort"
	"strings"
)

// Pos is a place in a catalog file. Filename is relative to the catalog
// directory, or "schemas.cue" for the definitions.
type Pos struct {
	Filename string
	Line     int
	Column   int
}

func (p Pos) String() string {
	if p.Filename == "" {
		return "-"
	}
	return fmt.Sprintf("%s:%d:%d", p.Filename, p.Line, p.Column)
}

// Problem is one thing wrong with a catalog, at a place in it.
type Problem struct {
	Pos     Pos
	Message string
}

func (p Problem) String() string {
	if p.Pos.Filename == "" {
		return p.Message
	}
	return p.Pos.String() + ": " + p.Message
}

// Problems is every problem found in a catalog; Load returns it as its error.
// Its Error method prints one problem per line as file:line:col: message.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func (ps Problems) sorted() Problems {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i].Pos, ps[j].Pos
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Column != b.Column {
			return a.Column < b.Column
		}
		return ps[i].Message < ps[j].Message
	})
	// The same error can reach us through several conjuncts.
	out := ps[:0]
	for i, p := range ps {
		if i > 0 && p == ps[i-1] {
			continue
		}
		out = append(out, p)
	}
	return out
}
