package secret

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "secrets.json")
	f := OpenFile(path)
	if _, err := f.Secrets(ctx, "partners/demo/signing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Secrets before any file = %v, want ErrNotFound", err)
	}
	created, err := f.EnsureSigningSecrets([]string{"partners/demo/signing", "partners/acme/signing"})
	if err != nil || len(created) != 2 {
		t.Fatalf("EnsureSigningSecrets = %v, %v; want 2 created", created, err)
	}
	v, err := f.Secrets(ctx, "partners/demo/signing")
	if err != nil || len(v) != 1 || !strings.HasPrefix(v[0], "whsec_") {
		t.Fatalf("Secrets = %v, %v", v, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("secrets file mode = %v, want 0600", fi.Mode().Perm())
	}
	again, err := f.EnsureSigningSecrets([]string{"partners/demo/signing"})
	if err != nil || len(again) != 0 {
		t.Errorf("second EnsureSigningSecrets created %v (%v), want nothing", again, err)
	}
	// A rotation written to the file is seen without reopening.
	time.Sleep(10 * time.Millisecond)
	rotated := `{"partners/demo/signing": ["` + v[0] + `", "whsec_bmV3c2VjcmV0bmV3c2VjcmV0bmV3c2VjcmV0"]}`
	if err := os.WriteFile(path, []byte(rotated), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(time.Second)
	os.Chtimes(path, now, now)
	v2, err := f.Secrets(ctx, "partners/demo/signing")
	if err != nil || len(v2) != 2 {
		t.Errorf("after rotation Secrets = %d values (%v), want 2", len(v2), err)
	}
}
