package source

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/fluxcd/pkg/git"
	"github.com/fluxcd/pkg/git/gogit"
	"github.com/fluxcd/pkg/git/repository"
	gogitv5 "github.com/go-git/go-git/v5"

	"github.com/whp-dev/whp/catalog"
)

// Artifact is one revision of the catalog: its files, relative to the
// catalog root.
type Artifact struct {
	// Revision identifies the content, Flux-style: "main@sha1:<hash>" for
	// Git, "sha256:<digest>" for a plain directory.
	Revision string
	Files    map[string][]byte
}

// Dir follows a directory on disk, uncommitted edits included: what `whp
// dev` watches. The revision is a digest of the files.
type Dir struct {
	Path string
}

// Fetch reads every catalog file under the directory.
func (d Dir) Fetch(context.Context) (Artifact, error) {
	files, err := catalog.ReadDir(d.Path)
	if err != nil {
		return Artifact{}, err
	}
	return Artifact{Revision: catalog.Digest(files), Files: files}, nil
}

// Git follows a Git repository on a branch, a tag or a commit, Flux-style.
// URL is a local path (or file:// URL), read in place with go-git, or a
// remote http(s):// or ssh:// URL, cloned shallowly with fluxcd/pkg's git
// client. Credentials never appear in the revision, status or logs.
type Git struct {
	URL    string
	Branch string // default "main" when neither Tag nor Commit is set
	Tag    string
	Commit string
	// Path is the catalog's sub-path in the repository.
	Path string
	// Auth holds credentials for remote URLs: "username" and "password"
	// (or "bearerToken") for HTTPS; "identity" (a PEM private key) and
	// "known_hosts" for SSH.
	Auth map[string][]byte
	// WorkDir is where remote repositories are cloned (a temp dir if "").
	WorkDir string
}

func (g Git) ref() (name, rev string) {
	switch {
	case g.Commit != "":
		return g.Commit, g.Commit
	case g.Tag != "":
		return g.Tag, "refs/tags/" + g.Tag
	default:
		b := g.Branch
		if b == "" {
			b = "main"
		}
		return b, b
	}
}

func (g Git) local() (string, bool) {
	if p, ok := strings.CutPrefix(g.URL, "file://"); ok {
		return p, true
	}
	if strings.Contains(g.URL, "://") || strings.HasPrefix(g.URL, "git@") {
		return "", false
	}
	return g.URL, true
}

// Fetch resolves the reference and reads the catalog at that commit.
func (g Git) Fetch(ctx context.Context) (Artifact, error) {
	name, rev := g.ref()
	if dir, ok := g.local(); ok {
		commit, files, err := ReadRevision(dir, rev, g.Path)
		if err != nil {
			return Artifact{}, err
		}
		return Artifact{Revision: name + "@sha1:" + commit, Files: files}, nil
	}
	return g.fetchRemote(ctx, name)
}

func (g Git) fetchRemote(ctx context.Context, name string) (Artifact, error) {
	u, err := url.Parse(g.URL)
	if err != nil {
		return Artifact{}, fmt.Errorf("repository URL: %w", err)
	}
	auth, err := git.NewAuthOptions(*u, g.Auth)
	if err != nil {
		return Artifact{}, fmt.Errorf("repository auth: %w", err)
	}
	dir, err := os.MkdirTemp(g.WorkDir, "whp-catalog-")
	if err != nil {
		return Artifact{}, err
	}
	defer os.RemoveAll(dir)
	client, err := gogit.NewClient(dir, auth, gogit.WithDiskStorage())
	if err != nil {
		return Artifact{}, fmt.Errorf("git client: %w", err)
	}
	defer client.Close()
	cfg := repository.CloneConfig{ShallowClone: true}
	switch {
	case g.Commit != "":
		cfg.Commit, cfg.Branch = g.Commit, g.Branch
	case g.Tag != "":
		cfg.Tag = g.Tag
	default:
		cfg.Branch = name
	}
	c, err := client.Clone(ctx, g.URL, cfg)
	if err != nil {
		return Artifact{}, fmt.Errorf("clone %s: %w", redactURL(u), err)
	}
	repo, err := gogitv5.PlainOpen(dir)
	if err != nil {
		return Artifact{}, fmt.Errorf("open clone: %w", err)
	}
	commit, files, err := readCommit(repo, c.Hash.String(), g.Path)
	if err != nil {
		return Artifact{}, err
	}
	return Artifact{Revision: name + "@sha1:" + commit, Files: files}, nil
}

// redactURL drops credentials from a URL for messages.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// IsNotFound reports whether err means the sub-path does not exist at the
// revision.
func IsNotFound(err error) bool { return errors.Is(err, ErrPathNotFound) }
