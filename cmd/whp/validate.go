package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/whp-dev/whp"

	"github.com/whp-dev/whp/catalog"
	"github.com/whp-dev/whp/reconciler/source"
)

func runValidate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("catalog validate", stderr)
	dir := fs.String("dir", "./catalog", "catalog directory")
	base := fs.String("base", "", "Git revision to compare with (e.g. origin/main): published schema versions must not change")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := catalog.Load(*dir)
	if err == nil && *base != "" {
		if ps := checkBase(c, *dir, *base, stderr); len(ps) > 0 {
			err = ps
		}
	}
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

// checkBase compares the catalog with the same directory at a Git revision.
func checkBase(head *catalog.Catalog, dir, rev string, stderr io.Writer) catalog.Problems {
	root, sub, err := source.Locate(dir)
	if err != nil {
		return catalog.Problems{{Message: fmt.Sprintf("--base %s: %v", rev, err)}}
	}
	commit, files, err := source.ReadRevision(root, rev, sub)
	if errors.Is(err, source.ErrPathNotFound) {
		fmt.Fprintf(stderr, "note: %s does not exist at %s: no published versions to compare\n", dir, rev)
		return nil
	}
	if err != nil {
		return catalog.Problems{{Message: fmt.Sprintf("--base %s: %v", rev, err)}}
	}
	baseName := rev + " (" + commit[:12] + ")"
	base, err := catalog.LoadFiles(baseName, files)
	if err != nil {
		// An invalid base cannot say what was published; say so, and do
		// not fail the change for it.
		fmt.Fprintf(stderr, "warning: the catalog at %s is invalid, so published versions cannot be checked against it\n", baseName)
		return nil
	}
	return catalog.CheckPublished(base, head, baseName)
}
