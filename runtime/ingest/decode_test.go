package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// decodeStd is the envelope parsed by encoding/json alone.
func decodeStd(body []byte) (request, bool) {
	var req request
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if dec.Decode(&req) != nil || dec.More() {
		return request{}, false
	}
	return req, true
}

var envelopeCorpus = []string{
	`{"domain":"orders","event":"order.created","version":"1","key":"k","data":{"id":"1","n":[1,2.5e3,-0,true,null]}}`,
	`{"domain":"orders","event":"order.created","version":"1","data":{}}`,
	` {"domain" : "orders" ,"event":"e","version":"1","data": [ 1 , 2 ] } `,
	`{"domain":"orders","event":"e","version":"1","data":"x<y & \u00e9 \ud83d\ude42 \\ \" \/"}`,
	`{"DOMAIN":"orders","Event":"e","vErSiOn":"1","data":1}`,
	`{"domain":"a","domain":"b","event":"e","version":"1","data":1}`,
	`{"domain":"orders","event":"e","version":"1","data":1,"extra":2}`,
	`{"domain":"orders","event":"e","version":"1","data":1} {}`,
	`{"domain":"orders","event":"e","version":"1","data":1} x`,
	`{"domain":"orders","event":"e","version":"1","data":{"a":1}`,
	`{"domain":"orders","event":"e","version":"1","data":{"a":01}}`,
	`{"domain":"orders","event":"e","version":"1","data":{"a":1,}}`,
	`{"domain":"orders","event":"e","version":"1","data":{'a':1}}`,
	`{"domain":"orders","event":"e","version":"1","data":NaN}`,
	`{"domain":1,"event":"e","version":"1","data":1}`,
	`{"domain":null,"event":"e","version":"1","data":null}`,
	`{"domain":"orders","event":["e"],"version":"1","data":1}`,
	`{"domain":"orders","event":"e","version":"1","key":{"k":1},"data":1}`,
	`{"domain":"ord\u0000ers","event":"e\ttab","version":"1","data":"\u0001"}`,
	"{\"domain\":\"orders\",\"event\":\"e\",\"version\":\"1\",\"data\":\"raw\x01control\"}",
	"{\"domain\":\"bad\xffutf8\",\"event\":\"e\",\"version\":\"1\",\"data\":\"\xc3\"}",
	"\xef\xbb\xbf{\"domain\":\"bom\",\"event\":\"e\",\"version\":\"1\",\"data\":1}",
	`[]`, `"str"`, `null`, `1`, ``, `{`, `{}`, `{"data":{"deep":[[[[[[[[[[1]]]]]]]]]]}}`,
	`{"domain":"orders","event":"e","version":"1","data":1e999}`,
	`{"domain":"orders","event":"e","version":"1","data":"\ud800"}`,
	`{"domain":"orders","event":"e","version":"1","data":"\x"}`,
	`{"domain":"orders","event":"e","version":"1","data":tru}`,
	`{"domain":"orders","event":"e","version":"1","data":` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}`,
}

// The fast path accepts only what encoding/json accepts, and reads the
// same fields from it; what it refuses goes to encoding/json, so the
// answers (and their violations) are encoding/json's either way.
func TestDecodeRequestFastPathAgrees(t *testing.T) {
	for _, body := range envelopeCorpus {
		checkFastPathAgrees(t, []byte(body))
	}
	// And the common case takes the fast path.
	if _, ok := decodeFast([]byte(envelopeCorpus[0])); !ok {
		t.Error("a plain envelope did not take the fast path")
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, body := range envelopeCorpus {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkFastPathAgrees(t, body) })
}

func checkFastPathAgrees(t *testing.T, body []byte) {
	t.Helper()
	fast, ok := decodeFast(body)
	if !ok {
		return
	}
	std, stdOK := decodeStd(body)
	if !stdOK {
		t.Fatalf("%q: the fast path accepts what encoding/json refuses", body)
	}
	if !reflect.DeepEqual(fast, std) {
		t.Fatalf("%q: fast path read %s, encoding/json %s", body, show(fast), show(std))
	}
}

func show(r request) string {
	s := func(p *string) string {
		if p == nil {
			return "<nil>"
		}
		return *p
	}
	return "domain=" + s(r.Domain) + " event=" + s(r.Event) + " version=" + s(r.Version) + " key=" + s(r.Key) + " data=" + string(r.Data)
}

// readBody reads what io.ReadAll reads, declared length or not, into a
// reused buffer of any size and contents, and the limit still refuses a
// longer body.
func TestReadBody(t *testing.T) {
	for _, c := range []struct {
		body     string
		declared int64
	}{{"", 0}, {"abc", 3}, {"abc", -1}, {"abcdef", 3}, {"abc", 10}, {strings.Repeat("x", 5000), 5000}, {strings.Repeat("y", 5000), -1}} {
		for _, buf := range [][]byte{nil, []byte("zz"), []byte(strings.Repeat("z", 8192))} {
			got, err := readBody(strings.NewReader(c.body), c.declared, 1<<20, buf)
			if c.declared > int64(len(c.body)) {
				if err == nil {
					t.Errorf("%q declared %d: no error for a short body", c.body, c.declared)
				}
				continue
			}
			if err != nil || string(got) != c.body {
				t.Errorf("%q declared %d, buffer of %d: got %q, %v", c.body, c.declared, cap(buf), got, err)
			}
		}
	}
	rec := httptest.NewRecorder()
	_, err := readBody(http.MaxBytesReader(rec, io.NopCloser(strings.NewReader("abcdef")), 4), 3, 4, nil)
	var tooBig *http.MaxBytesError
	if !errors.As(err, &tooBig) {
		t.Errorf("a body past the limit: %v", err)
	}
}

// writeAccepted answers what writeJSON would, byte for byte.
func TestWriteAccepted(t *testing.T) {
	id := "0190f1e2-aaaa-7bbb-8ccc-123456789abc"
	fast, slow := httptest.NewRecorder(), httptest.NewRecorder()
	writeAccepted(fast, id)
	writeJSON(slow, http.StatusAccepted, struct {
		ID string `json:"id"`
	}{id})
	if fast.Code != slow.Code || fast.Body.String() != slow.Body.String() || !reflect.DeepEqual(fast.Header(), slow.Header()) {
		t.Errorf("writeAccepted %d %v %q, writeJSON %d %v %q", fast.Code, fast.Header(), fast.Body, slow.Code, slow.Header(), slow.Body)
	}
}
