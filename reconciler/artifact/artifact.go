// Package artifact publishes what partners read about the events they
// receive: each schema version's JSON Schema, and an index of them all —
// to a directory locally, to S3 in production.
package artifact

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/whp-dev/whp/catalog"
)

// ErrNotFound is returned by Get for a missing key.
var ErrNotFound = errors.New("artifact: not found")

// Store holds artifacts by slash-separated key.
type Store interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, body []byte) error
}

// Key is where a schema version's JSON Schema is published.
func Key(domain, event, version string) string {
	return path.Join("schemas", domain, event, version+".json")
}

// IndexKey lists every published version.
const IndexKey = "schemas/index.json"

// IndexEntry is one version in the index.
type IndexEntry struct {
	Domain            string `json:"domain"`
	Event             string `json:"event"`
	Version           string `json:"version"`
	Status            string `json:"status"`
	ContainsSensitive bool   `json:"contains_sensitive"`
	Owner             string `json:"owner"`
	Compatibility     string `json:"compatibility"`
	Key               string `json:"key"`
}

// Publish writes each schema's JSON Schema (with $id and title) and the
// index, skipping artifacts whose content is already there: publishing
// the same catalog twice writes nothing. It returns the keys written.
func Publish(ctx context.Context, st Store, c *catalog.Catalog, baseURL string) ([]string, error) {
	var written []string
	index := make([]IndexEntry, 0, len(c.Schemas))
	for _, s := range c.Schemas {
		key := Key(s.Domain, s.Event, s.Version)
		body, err := document(s, strings.TrimRight(baseURL, "/")+"/"+key)
		if err != nil {
			return written, err
		}
		w, err := putIfChanged(ctx, st, key, body)
		if err != nil {
			return written, err
		}
		if w {
			written = append(written, key)
		}
		index = append(index, IndexEntry{Domain: s.Domain, Event: s.Event, Version: s.Version, Status: s.Status,
			ContainsSensitive: s.ContainsSensitive, Owner: s.Owner, Compatibility: s.Compatibility, Key: key})
	}
	sort.Slice(index, func(i, j int) bool { return index[i].Key < index[j].Key })
	body, err := json.MarshalIndent(map[string]any{"schemas": index}, "", "  ")
	if err != nil {
		return written, err
	}
	w, err := putIfChanged(ctx, st, IndexKey, append(body, '\n'))
	if w {
		written = append(written, IndexKey)
	}
	return written, err
}

// document is the published JSON Schema: the compiled one with an $id, a
// title and the description, pretty-printed.
func document(s *catalog.Schema, id string) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(s.JSONSchema, &doc); err != nil {
		return nil, fmt.Errorf("schema %s: %w", s.ID(), err)
	}
	doc["$id"] = id
	doc["title"] = fmt.Sprintf("%s/%s version %s", s.Domain, s.Event, s.Version)
	if s.Description != "" {
		doc["description"] = s.Description
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	return append(b, '\n'), err
}

func putIfChanged(ctx context.Context, st Store, key string, body []byte) (bool, error) {
	old, err := st.Get(ctx, key)
	switch {
	case err == nil && bytes.Equal(old, body):
		return false, nil
	case err != nil && !errors.Is(err, ErrNotFound):
		return false, fmt.Errorf("read artifact %s: %w", key, err)
	}
	if err := st.Put(ctx, key, body); err != nil {
		return false, fmt.Errorf("publish artifact %s: %w", key, err)
	}
	return true, nil
}

// Dir stores artifacts as files under a directory.
type Dir struct {
	Path string
}

func (d Dir) file(key string) (string, error) {
	clean := path.Clean("/" + key)
	if clean == "/" || strings.Contains(key, "..") {
		return "", fmt.Errorf("artifact: invalid key %q", key)
	}
	return filepath.Join(d.Path, filepath.FromSlash(clean)), nil
}

// Get reads an artifact.
func (d Dir) Get(_ context.Context, key string) ([]byte, error) {
	f, err := d.file(key)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(f)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotFound
	}
	return b, err
}

// Put writes an artifact atomically.
func (d Dir) Put(_ context.Context, key string, body []byte) error {
	f, err := d.file(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
		return err
	}
	tmp := f + ".tmp"
	if err := os.WriteFile(tmp, body, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, f)
}

// S3 stores artifacts in a bucket under a prefix (the bucket is
// versioned, encrypted and private; see infra/).
type S3 struct {
	Client *s3.Client
	Bucket string
	Prefix string
}

func (s S3) key(k string) string {
	if p := strings.Trim(s.Prefix, "/"); p != "" {
		return p + "/" + k
	}
	return k
}

// Get reads an artifact.
func (s S3) Get(ctx context.Context, key string) ([]byte, error) {
	out, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(s.key(key))})
	var nsk *s3types.NoSuchKey
	if errors.As(err, &nsk) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(out.Body)
	return buf.Bytes(), err
}

// Put writes an artifact as application/json.
func (s S3) Put(ctx context.Context, key string, body []byte) error {
	_, err := s.Client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.Bucket), Key: aws.String(s.key(key)), Body: bytes.NewReader(body),
		ContentType: aws.String("application/schema+json"),
	})
	return err
}
