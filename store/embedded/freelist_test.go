package embedded

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/whp-dev/whp/internal/rusage"
	"github.com/whp-dev/whp/store"
	bolt "go.etcd.io/bbolt"
)

// TestCloseWritesFreelist: the store's commits leave the freelist out
// (NoFreelistSync), and Close writes it, so a store that was stopped opens
// without scanning its files; a crash — the files as the last commit left
// them — leaves the scan to the next Open, which still finds every row.
// Unclosed tells the two apart, as whp dev's start does.
func TestCloseWritesFreelist(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s, 0, 500)
	var size int64
	for _, name := range []string{fileName, eventsFileName} {
		path := filepath.Join(dir, name)
		if written, err := freelistWritten(path); written || err != nil {
			t.Errorf("%s while open: freelist written %v (%v); want none written by the store's commits", name, written, err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		size += fi.Size()
	}
	crashed := t.TempDir()
	copyStore(t, dir, crashed) // the files as a SIGKILL would leave them
	if n, err := Unclosed(crashed); n != size || err != nil {
		t.Errorf("Unclosed of the files a crash left = %d, %v; want both files, %d bytes", n, err, size)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := Unclosed(dir); n != 0 || err != nil {
		t.Errorf("Unclosed after Close = %d, %v; want 0: the next Open scans %d bytes", n, err, n)
	}
	if err := s.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
	if n, err := Unclosed(t.TempDir()); n != 0 || err != nil {
		t.Errorf("Unclosed of a dir with no store = %d, %v; want 0", n, err)
	}
	for _, d := range []string{dir, crashed} {
		s, err := Open(d)
		if err != nil {
			t.Fatal(err)
		}
		fill(t, s, 500, 600) // the reopened store allocates from the freelist it read or rebuilt
		for _, i := range []int{0, 499, 599} {
			if _, err := s.GetDelivery(ctx, fmt.Sprint("e", i), fmt.Sprint("d", i)); err != nil {
				t.Errorf("reopened %s: delivery %d: %v", d, i, err)
			}
			if _, err := s.GetEvent(ctx, fmt.Sprint("e", i)); err != nil {
				t.Errorf("reopened %s: event %d: %v", d, i, err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// fill writes events and deliveries from..to-1, a hundred a write, and
// rewrites each delivery once, as its attempt's outcome does, so that the
// files have pages to free.
func fill(tb testing.TB, s *Store, from, to int) {
	tb.Helper()
	ctx := context.Background()
	now := time.Now()
	for i := from; i < to; i += 100 {
		var es []store.Event
		var ds []store.Delivery
		for j := i; j < min(i+100, to); j++ {
			es = append(es, store.Event{ID: fmt.Sprint("e", j), SchemaID: "orders#order.created#1", AcceptedAt: now, Topic: "wh.ingress",
				Data: []byte(`{"order_id":"ord_1001","amount":129.5,"currency":"EUR"}`), ExpiresAt: now.Add(time.Hour)})
			ds = append(ds, store.Delivery{EventID: fmt.Sprint("e", j), ID: fmt.Sprint("d", j), SubscriptionID: "s", PartnerID: "p",
				SchemaID: "orders#order.created#1", Status: store.DeliveryPending, CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)})
		}
		if err := s.CreateEvents(ctx, es); err != nil {
			tb.Fatal(err)
		}
		if err := s.CreateDeliveries(ctx, ds); err != nil {
			tb.Fatal(err)
		}
		for k := range ds {
			ds[k].Status = store.DeliveryDelivered
		}
		if err := s.PutDeliveries(ctx, ds); err != nil {
			tb.Fatal(err)
		}
	}
}

// copyStore copies the store's files in dir to dst, and syncs the copies.
func copyStore(tb testing.TB, dir, dst string) {
	tb.Helper()
	for _, name := range []string{fileName, eventsFileName} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			tb.Fatal(err)
		}
		f, err := os.OpenFile(filepath.Join(dst, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, filePerm)
		if err != nil {
			tb.Fatal(err)
		}
		// On disk before it is opened: Open's first commit would otherwise
		// flush the whole copy, not the commit.
		if _, err := f.Write(b); err != nil {
			tb.Fatal(err)
		}
		if err := errors.Join(f.Sync(), f.Close()); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkOpen opens a store of 200,000 events and deliveries (its files
// in the page cache): as Close left it, and as a crash does, its
// last commit without the freelist — the baseline, the scan every Open
// made before Close wrote the freelist (docs/benchmarks.md, "A restart
// with history").
//
//	go test -run '^$' -bench Open -benchtime 5x ./store/embedded
func BenchmarkOpen(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	fill(b, s, 0, 200_000)
	crashed := b.TempDir()
	copyStore(b, dir, crashed)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	var size int64
	for _, name := range []string{fileName, eventsFileName} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			b.Fatal(err)
		}
		size += fi.Size()
	}
	for _, bc := range []struct{ name, from string }{{"after-close", dir}, {"after-crash", crashed}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				d := b.TempDir()
				copyStore(b, bc.from, d) // Close writes the freelist: each Open gets the files as they were
				b.StartTimer()
				s, err := Open(d)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				s.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(size)/1e6, "MB-on-disk")
		})
	}
}

// BenchmarkFreelistCommit measures why the store's commits leave the
// freelist out (Close): a commit of one small row, as a delivery's status
// is, with the freelist written and left out. Two sizes: "steady", the
// freelist of a store under constant load (56–304 bytes in whp bench's
// soak at 2,000 events a second, logged from the commits: a handful of
// pages, taken up as fast as commits free them), and "freed", ≈ 1,900
// free pages (15 KiB), as after deleting a few MB. Written, it is a page
// more to write and to flush in each commit, whatever its size: 15–30 µs
// of CPU more a commit here (docs/benchmarks.md, "A restart with
// history"). Each commit fsyncs; cpu-ns/op is the process's CPU a commit,
// the fsync's system time in it.
//
//	go test -run '^$' -bench FreelistCommit -count 6 ./store/embedded
func BenchmarkFreelistCommit(b *testing.B) {
	for _, size := range []struct {
		name string
		rows int // large rows written, then deleted
		min  int // the freelist's least size in bytes, and its most
		max  int
	}{{"steady", 0, 1, 1024}, {"freed", 1350, 12 << 10, 16 << 10}} {
		s := openTemp(b)
		freePages(b, s.events, size.rows)
		inuse := s.events.Stats().FreelistInuse
		if inuse < size.min || inuse > size.max {
			b.Fatalf("%s: freelist of %d bytes; want %d to %d", size.name, inuse, size.min, size.max)
		}
		row := []byte(`{"status":"delivered"}`)
		for _, bc := range []struct {
			name  string
			leave bool
		}{{"written", false}, {"left-out", true}} {
			b.Run(size.name+"/"+bc.name, func(b *testing.B) {
				i := 0
				cpu0 := rusage.CPU()
				for b.Loop() {
					i++
					err := s.events.Update(func(tx *bolt.Tx) error {
						tx.DB().NoFreelistSync = bc.leave
						return tx.Bucket([]byte(bEvents)).Put(fmt.Appendf(nil, "row%d", i), row)
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64((rusage.CPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
				b.ReportMetric(float64(s.events.Stats().FreelistInuse), "freelist-bytes")
			})
		}
	}
}

// freePages writes n rows of 5,000 bytes (two pages of their own each) to
// db's events bucket, then deletes them: their pages free, as after a
// history sweep; and commits once more, so that the freelist counts them.
func freePages(tb testing.TB, db *bolt.DB, n int) {
	tb.Helper()
	big := make([]byte, 5000)
	for _, put := range []bool{true, false} {
		err := db.Update(func(tx *bolt.Tx) error {
			bk := tx.Bucket([]byte(bEvents))
			for j := range n {
				k := fmt.Appendf(nil, "big%d", j)
				var err error
				if put {
					err = bk.Put(k, big)
				} else {
					err = bk.Delete(k)
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	if err := db.Update(func(*bolt.Tx) error { return nil }); err != nil {
		tb.Fatal(err)
	}
}

// TestFreelistWrittenTornMeta: a meta page whose checksum fails — a write
// a crash tore — is passed over, as bbolt passes it over, and the other
// one read.
func TestFreelistWrittenTornMeta(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s, 0, 100)
	if err := s.Close(); err != nil { // the newest meta: freelist written; the other: not
		t.Fatal(err)
	}
	path := filepath.Join(dir, eventsFileName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int(binary.LittleEndian.Uint32(b[24:]))
	newest := 0
	if binary.LittleEndian.Uint64(b[pageSize+64:]) > binary.LittleEndian.Uint64(b[64:]) {
		newest = pageSize
	}
	b[newest+40] ^= 0xff // in its root bucket's page id: the checksum fails
	if err := os.WriteFile(path, b, filePerm); err != nil {
		t.Fatal(err)
	}
	if written, err := freelistWritten(path); written || err != nil {
		t.Errorf("freelistWritten with the newest meta torn = %v, %v; want false from the meta before it", written, err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatalf("bbolt opens it from the meta before: %v", err)
	}
	s.Close()
}
