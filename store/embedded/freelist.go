package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Unclosed reports how much of the store in dir its next Open reads whole:
// the bytes of its files whose last commit left the freelist out (Close),
// as a process that did not close the store — a crash, a SIGKILL, the
// machine gone — leaves them. 0 for a store that was closed, or none there
// yet. whp dev says so as it starts, so that a slower start after a crash
// is explained (docs/benchmarks.md, "A restart with history").
func Unclosed(dir string) (int64, error) {
	var n int64
	for _, name := range []string{fileName, eventsFileName} {
		path := filepath.Join(dir, name)
		written, err := freelistWritten(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if !written {
			fi, err := os.Stat(path)
			if err != nil {
				return 0, err
			}
			n += fi.Size()
		}
	}
	return n, nil
}

// freelistWritten reads the meta page of path's newest commit and reports
// whether that commit wrote the file's freelist. bbolt keeps two meta
// pages, 0 and 1, and writes them in turn; each is a page header (16
// bytes) then magic, version, page size (4 bytes each), flags (4), the
// root bucket (16), the freelist's page (8; all ones when not written),
// the high water mark (8), the transaction id (8) and an FNV-64a checksum
// of what comes before it (8), in the machine's byte order (little-endian
// on every platform whp is built for). A meta page whose checksum fails —
// a write torn by a crash — is passed over, as bbolt passes it over.
func freelistWritten(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, metaEnd)
	if _, err := io.ReadFull(f, head); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	pageSize := int64(binary.LittleEndian.Uint32(head[24:]))
	var newest uint64
	found, written := false, false
	for i := range int64(2) {
		meta := make([]byte, metaEnd)
		if _, err := f.ReadAt(meta, i*pageSize); err != nil {
			return false, fmt.Errorf("%s: meta page %d: %w", path, i, err)
		}
		if binary.LittleEndian.Uint32(meta[16:]) != metaMagic {
			continue
		}
		h := fnv.New64a()
		h.Write(meta[16:72])
		if h.Sum64() != binary.LittleEndian.Uint64(meta[72:]) {
			continue
		}
		if txid := binary.LittleEndian.Uint64(meta[64:]); !found || txid > newest {
			found, newest = true, txid
			written = binary.LittleEndian.Uint64(meta[48:]) != noFreelist
		}
	}
	if !found {
		return false, fmt.Errorf("%s: no valid bbolt meta page", path)
	}
	return written, nil
}

const (
	metaMagic  = 0xED0CDAED
	metaEnd    = 80         // a meta page's header and meta, through the checksum
	noFreelist = ^uint64(0) // the freelist's page in a meta whose commit did not write it
)
