// Package source reads the catalog from Git, Flux-style: a repository (a
// local path or a remote URL), a reference (branch, tag or commit) and a
// sub-path, resolved to a revision and the files of that revision.
package source

import (
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// ErrPathNotFound means the sub-path does not exist at the revision.
var ErrPathNotFound = errors.New("source: path not found at revision")

// Locate finds the Git repository that holds dir and returns its root and
// dir's slash-separated path inside it.
func Locate(dir string) (root, sub string, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", "", err
	}
	repo, err := git.PlainOpenWithOptions(abs, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return "", "", fmt.Errorf("%s is not in a Git repository: %w", dir, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return "", "", fmt.Errorf("repository of %s: %w", dir, err)
	}
	root = wt.Filesystem.Root()
	rel, err := filepath.Rel(root, abs)
	if err != nil {
		return "", "", err
	}
	if rel == "." {
		rel = ""
	}
	return root, filepath.ToSlash(rel), nil
}

// ReadRevision resolves rev (a branch, tag, commit or any revision
// expression such as HEAD~1) in the repository at root and returns the full
// commit hash and every file under sub at that commit.
func ReadRevision(root, rev, sub string) (commit string, files map[string][]byte, err error) {
	repo, err := git.PlainOpen(root)
	if err != nil {
		return "", nil, fmt.Errorf("open repository %s: %w", root, err)
	}
	return readCommit(repo, rev, sub)
}

func readCommit(repo *git.Repository, rev, sub string) (string, map[string][]byte, error) {
	h, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return "", nil, fmt.Errorf("resolve revision %q: %w", rev, err)
	}
	c, err := repo.CommitObject(*h)
	if err != nil {
		return "", nil, fmt.Errorf("commit %s: %w", h, err)
	}
	files, err := treeFiles(c, sub)
	return h.String(), files, err
}

// treeFiles reads every file under sub in the commit's tree.
func treeFiles(c *object.Commit, sub string) (map[string][]byte, error) {
	tree, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("tree of %s: %w", c.Hash, err)
	}
	if sub = strings.Trim(path.Clean("/"+sub), "/"); sub != "" {
		tree, err = tree.Tree(sub)
		if errors.Is(err, object.ErrDirectoryNotFound) {
			return nil, fmt.Errorf("%w: %s at %s", ErrPathNotFound, sub, c.Hash)
		}
		if err != nil {
			return nil, fmt.Errorf("%s at %s: %w", sub, c.Hash, err)
		}
	}
	files := map[string][]byte{}
	err = tree.Files().ForEach(func(f *object.File) error {
		if !f.Mode.IsFile() {
			return nil
		}
		r, err := f.Reader()
		if err != nil {
			return err
		}
		defer r.Close()
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		files[f.Name] = b
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read tree %s at %s: %w", sub, c.Hash, err)
	}
	return files, nil
}
