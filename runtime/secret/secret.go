// Package secret resolves secret references (names in the catalog) to
// secret values. Production uses AWS Secrets Manager (a later backend);
// `whp dev` uses a JSON file in its data dir. Values never go to logs.
package secret

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/whp-dev/whp/runtime/signature"
)

// ErrNotFound is returned for a reference the provider does not hold.
var ErrNotFound = errors.New("secret: not found")

// File is a provider backed by a JSON file mapping each reference to its
// values, newest last: {"partners/demo/signing": ["whsec_…"]}. Several
// values are active at once during a rotation. The file is re-read when it
// changes, so a rotation needs no restart.
type File struct {
	path string

	mu      sync.Mutex
	modTime int64
	values  map[string][]string
}

// OpenFile opens the provider; the file may not exist yet.
func OpenFile(path string) *File { return &File{path: path} }

// Secrets returns every active value of ref.
func (f *File) Secrets(_ context.Context, ref string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.reloadLocked(); err != nil {
		return nil, err
	}
	v := f.values[ref]
	if len(v) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	return append([]string(nil), v...), nil
}

func (f *File) reloadLocked() error {
	fi, err := os.Stat(f.path)
	if errors.Is(err, os.ErrNotExist) {
		f.values = nil
		return nil
	}
	if err != nil {
		return fmt.Errorf("secrets file: %w", err)
	}
	if f.values != nil && fi.ModTime().UnixNano() == f.modTime {
		return nil
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("secrets file: %w", err)
	}
	var values map[string][]string
	if err := json.Unmarshal(b, &values); err != nil {
		return fmt.Errorf("secrets file %s: not a JSON object of string lists", f.path)
	}
	f.values, f.modTime = values, fi.ModTime().UnixNano()
	return nil
}

// EnsureSigningSecrets gives every ref without a value a new whsec_ secret
// and writes the file (mode 0600). It returns the refs it created. Dev only:
// production secrets are created in Secrets Manager by their owners.
func (f *File) EnsureSigningSecrets(refs []string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.reloadLocked(); err != nil {
		return nil, err
	}
	values := map[string][]string{}
	for k, v := range f.values {
		values[k] = v
	}
	var created []string
	for _, ref := range refs {
		if len(values[ref]) == 0 {
			values[ref] = []string{signature.NewSecret()}
			created = append(created, ref)
		}
	}
	if len(created) == 0 {
		return nil, nil
	}
	sort.Strings(created)
	b, err := json.MarshalIndent(values, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
		return nil, err
	}
	tmp := f.path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("write secrets file: %w", err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		return nil, fmt.Errorf("write secrets file: %w", err)
	}
	f.values = nil // force a reload with the new mtime
	return created, f.reloadLocked()
}
