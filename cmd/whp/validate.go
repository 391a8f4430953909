package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/whp-dev/whp"

	"github.com/whp-dev/whp/catalog"
)

func runValidate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("catalog validate", stderr)
	dir := fs.String("dir", "./catalog", "catalog directory")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := catalog.Load(*dir)
	var ps catalog.Problems
	switch {
	case errors.As(err, &ps):
		for _, p := range ps {
			// Positions are relative to the catalog; print them relative to
			// where the command runs, so editors can jump to them.
			if p.Pos.Filename != "" && p.Pos.Filename != whp.DefinitionsFile {
				p.Pos.Filename = filepath.Join(*dir, p.Pos.Filename)
			}
			fmt.Fprintln(stderr, p)
		}
		fmt.Fprintf(stderr, "%d problem(s) in %s\n", len(ps), *dir)
		return exitError{1}
	case err != nil:
		return err
	}
	fmt.Fprintf(stdout, "%s: valid (%d schemas, %d partners, %d subscriptions, revision %s)\n",
		*dir, len(c.Schemas), len(c.Partners), len(c.Subscriptions), c.Digest)
	return nil
}
