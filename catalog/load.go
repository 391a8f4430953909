package catalog

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/build"
	"cuelang.org/go/cue/cuecontext"
	"cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/format"
	"cuelang.org/go/cue/parser"
	"cuelang.org/go/cue/token"
	"cuelang.org/go/encoding/jsonschema"

	"github.com/whp-dev/whp"
	"github.com/whp-dev/whp/catalog/compat"
	"github.com/whp-dev/whp/catalog/filter"
	"github.com/whp-dev/whp/catalog/transform"
)

// PackageName is the CUE package every catalog file declares.
const PackageName = "whp"

// Option changes how Load reads a catalog.
type Option interface{ apply(*options) }

type options struct {
	demoBase string
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithDemoBase fills env.demo_base, the base URL of the demo partner that
// `whp dev` serves under /demo/. Default: the definition's default,
// http://127.0.0.1:8080.
func WithDemoBase(url string) Option {
	return optionFunc(func(o *options) { o.demoBase = url })
}

// topLevel lists the fields a catalog may declare.
var topLevel = map[string]bool{"schemas": true, "partners": true, "subscriptions": true, "env": true}

// Load reads every .cue file under dir, checks the catalog against
// schemas.cue and the cross-reference rules, and compiles each schema. On any
// problem it returns a nil Catalog and Problems listing all of them.
func Load(dir string, opts ...Option) (*Catalog, error) {
	files, err := readFiles(dir)
	if err != nil {
		return nil, err
	}
	return load(dir, files, opts)
}

// LoadFiles loads a catalog held in memory, such as a directory of a Git
// tree: names are slash-separated paths relative to the catalog root, and
// only .cue files outside testdata and dot-directories are read.
func LoadFiles(name string, files map[string][]byte, opts ...Option) (*Catalog, error) {
	var srcs []sourceFile
	for path, src := range files {
		if filepath.Ext(path) != ".cue" || skipPath(path) {
			continue
		}
		srcs = append(srcs, sourceFile{name: path, src: src})
	}
	if len(srcs) == 0 {
		return nil, fmt.Errorf("read catalog %s: no .cue files", name)
	}
	sort.Slice(srcs, func(i, j int) bool { return srcs[i].name < srcs[j].name })
	return load(name, srcs, opts)
}

// skipPath reports whether a catalog-relative path lies in a directory the
// loader skips.
func skipPath(path string) bool {
	parts := strings.Split(path, "/")
	for _, p := range parts[:len(parts)-1] {
		if skipDir(p) {
			return true
		}
	}
	return false
}

// SkipDir reports whether the loader skips a directory of this name:
// testdata, cue.mod, and names starting with "." or "_".
func SkipDir(name string) bool { return skipDir(name) }

func skipDir(name string) bool {
	return name == "testdata" || name == "cue.mod" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")
}

func load(dir string, files []sourceFile, opts []Option) (*Catalog, error) {
	var o options
	for _, opt := range opts {
		opt.apply(&o)
	}
	l := &loader{dir: dir, ctx: newCtx()}
	root, ok := l.build(files, o)
	if !ok {
		return nil, l.problems.sorted()
	}
	c := &Catalog{Digest: digest(files)}
	l.schemas(root, c)
	l.compatibility(c)
	l.partners(root, c)
	l.subscriptions(root, c)
	if len(l.problems) > 0 {
		return nil, l.problems.sorted()
	}
	c.index()
	return c, nil
}

type sourceFile struct {
	name string // relative to the catalog directory
	src  []byte
}

func readFiles(dir string) ([]sourceFile, error) {
	files, err := ReadDir(dir)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("read catalog %s: no .cue files", dir)
	}
	srcs := make([]sourceFile, 0, len(files))
	for _, name := range slices.Sorted(maps.Keys(files)) {
		srcs = append(srcs, sourceFile{name: name, src: files[name]})
	}
	return srcs, nil
}

// ReadDir reads every catalog file under dir — .cue files outside the
// directories the loader skips — keyed by slash-separated relative path.
func ReadDir(dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && skipDir(d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if filepath.Ext(path) != ".cue" {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = src
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read catalog %s: %w", dir, err)
	}
	return files, nil
}

type loader struct {
	dir      string
	ctx      *cue.Context
	problems Problems
	root     cue.Value
}

func (l *loader) addf(pos token.Pos, format string, args ...any) {
	l.problems = append(l.problems, Problem{Pos: toPos(pos), Message: fmt.Sprintf(format, args...)})
}

// addErr turns a CUE error into problems, each placed in a catalog file
// where CUE can tell, rather than at the constraint in schemas.cue.
func (l *loader) addErr(err error) {
	for _, e := range errors.Errors(err) {
		format, args := e.Msg()
		msg := fmt.Sprintf(format, args...)
		if rest, ok := strings.CutPrefix(msg, "incomplete value "); ok {
			msg = "a value is required here, and none is given (want " + rest + ")"
		}
		if path := e.Path(); len(path) > 0 {
			msg = pathString(path) + ": " + msg
		}
		l.problems = append(l.problems, Problem{Pos: l.place(e), Message: msg})
	}
}

func (l *loader) place(e errors.Error) Pos {
	cands := append([]token.Pos{e.Position()}, e.InputPositions()...)
	for _, p := range cands {
		if p.IsValid() && p.Filename() != whp.DefinitionsFile {
			return toPos(p)
		}
	}
	// Walk up the path to the nearest value declared in a catalog file.
	path := e.Path()
	if l.root.Exists() {
		for i := len(path); i > 0; i-- {
			v := l.root.LookupPath(cue.MakePath(selectors(path[:i])...))
			if p := declPos(v); v.Exists() && p.IsValid() && p.Filename() != whp.DefinitionsFile {
				return toPos(p)
			}
		}
	}
	for _, p := range cands {
		if p.IsValid() {
			return toPos(p)
		}
	}
	return Pos{}
}

func (l *loader) build(files []sourceFile, o options) (cue.Value, bool) {
	inst := build.NewContext().NewInstance(l.dir, nil)
	defs, err := parser.ParseFile(whp.DefinitionsFile, whp.Definitions(), parser.ParseComments)
	if err != nil {
		l.addErr(err)
		return cue.Value{}, false
	}
	if err := inst.AddSyntax(defs); err != nil {
		l.addErr(err)
		return cue.Value{}, false
	}
	for _, f := range files {
		file, err := parser.ParseFile(f.name, f.src, parser.ParseComments)
		if err != nil {
			l.addErr(err)
			continue
		}
		if name := file.PackageName(); name != PackageName {
			pos := file.Pos()
			if pkg := packageClause(file); pkg != nil {
				pos = pkg.Pos()
			}
			l.addf(pos, "package is %q, want %q (every catalog file is part of package %s)", name, PackageName, PackageName)
			continue
		}
		if err := inst.AddSyntax(file); err != nil {
			l.addErr(err)
		}
	}
	if len(l.problems) > 0 {
		return cue.Value{}, false
	}
	v := l.ctx.BuildInstance(inst)
	if o.demoBase != "" {
		v = v.FillPath(cue.ParsePath("env.demo_base"), o.demoBase)
	}
	l.root = v
	it, err := v.Fields()
	if err == nil {
		for it.Next() {
			if !topLevel[it.Selector().String()] {
				l.addf(declPos(it.Value()), "%s: unknown top-level field (a catalog declares schemas, partners and subscriptions)", it.Selector())
			}
		}
	}
	// Validate reports every error, where v.Err only has the first.
	if err := v.Validate(cue.Concrete(false)); err != nil {
		l.addErr(err)
		return cue.Value{}, false
	} else if err := v.Err(); err != nil {
		l.addErr(err)
		return cue.Value{}, false
	}
	return v, len(l.problems) == 0
}

func packageClause(f *ast.File) *ast.Package {
	for _, d := range f.Decls {
		if p, ok := d.(*ast.Package); ok {
			return p
		}
	}
	return nil
}

// each calls fn for every regular field of the struct at v.
func (l *loader) each(v cue.Value, fn func(name string, v cue.Value)) {
	it, err := v.Fields()
	if err != nil {
		l.addErr(err)
		return
	}
	for it.Next() {
		fn(it.Selector().Unquoted(), it.Value())
	}
}

// concrete validates v as fully concrete data and decodes it into dst.
func (l *loader) concrete(v cue.Value, dst any) bool {
	if err := v.Validate(cue.Concrete(true)); err != nil {
		l.addErr(err)
		return false
	}
	if err := v.Decode(dst); err != nil {
		l.addErr(err)
		return false
	}
	return true
}

func (l *loader) schemas(root cue.Value, c *Catalog) {
	l.each(root.LookupPath(cue.ParsePath("schemas")), func(_ string, dv cue.Value) {
		l.each(dv, func(_ string, ev cue.Value) {
			l.each(ev, func(_ string, vv cue.Value) {
				if s := l.schema(vv); s != nil {
					c.Schemas = append(c.Schemas, s)
				}
			})
		})
	})
}

type schemaMeta struct {
	Domain            string      `json:"domain"`
	Event             string      `json:"event"`
	Version           string      `json:"version"`
	Status            string      `json:"status"`
	ContainsSensitive bool        `json:"contains_sensitive"`
	Description       string      `json:"description"`
	Owner             string      `json:"owner"`
	Compatibility     string      `json:"compatibility"`
	Topic             TopicConfig `json:"topic"`
}

// metaFields are the concrete fields of a schema; the payload is not.
var metaFields = []string{"domain", "event", "version", "status", "contains_sensitive", "description", "owner", "compatibility", "topic"}

func (l *loader) schema(v cue.Value) *Schema {
	var meta schemaMeta
	ok := true
	for _, f := range metaFields {
		fv := v.LookupPath(cue.ParsePath(f))
		if !fv.Exists() {
			continue
		}
		if err := fv.Validate(cue.Concrete(true)); err != nil {
			l.addErr(err)
			ok = false
			continue
		}
		b, err := fv.MarshalJSON()
		if err == nil {
			err = json.Unmarshal([]byte(`{"`+f+`":`+string(b)+`}`), &meta)
		}
		if err != nil {
			l.addf(declPos(fv), "%s: %v", f, err)
			ok = false
		}
	}
	if !ok {
		return nil
	}

	payload := v.LookupPath(cue.ParsePath("payload"))
	expr, err := jsonschema.Generate(payload, nil)
	if err != nil {
		l.addErr(err)
		return nil
	}
	js, err := l.ctx.BuildExpr(expr).MarshalJSON()
	if err != nil {
		l.addf(declPos(payload), "payload: cannot be expressed as JSON Schema: %v", err)
		return nil
	}
	if js, err = simplify(js); err != nil {
		l.addf(declPos(payload), "payload: simplify JSON Schema: %v", err)
		return nil
	}
	val, err := NewValidator(js)
	if err != nil {
		l.addf(declPos(payload), "payload: %v", err)
		return nil
	}
	src, err := format.Node(payload.Syntax(cue.Docs(true)))
	if err != nil {
		l.addf(declPos(payload), "payload: format: %v", err)
		return nil
	}
	return &Schema{
		Domain:            meta.Domain,
		Event:             meta.Event,
		Version:           meta.Version,
		Status:            meta.Status,
		ContainsSensitive: meta.ContainsSensitive,
		Description:       meta.Description,
		Owner:             meta.Owner,
		Compatibility:     meta.Compatibility,
		Topic:             meta.Topic,
		SensitivePaths:    sensitivePaths(payload, nil),
		JSONSchema:        js,
		CUESource:         string(src),
		Pos:               toPos(declPos(v)),
		validator:         val,
	}
}

// compatibility checks each version of an event against the version
// before it, under the newer version's compatibility mode.
func (l *loader) compatibility(c *Catalog) {
	byEvent := map[string][]*Schema{}
	for _, s := range c.Schemas {
		k := s.Domain + "/" + s.Event
		byEvent[k] = append(byEvent[k], s)
	}
	for _, versions := range byEvent {
		sort.Slice(versions, func(i, j int) bool { return versionNumber(versions[i]) < versionNumber(versions[j]) })
		for i := 1; i < len(versions); i++ {
			prev, next := versions[i-1], versions[i]
			if next.Compatibility == "NONE" {
				continue
			}
			breaks, err := compat.Mode(next.Compatibility, prev.JSONSchema, next.JSONSchema, "version "+prev.Version, "version "+next.Version)
			if err != nil {
				l.problems = append(l.problems, Problem{Pos: next.Pos, Message: fmt.Sprintf("compare with version %s: %v", prev.Version, err)})
				continue
			}
			for _, b := range breaks {
				l.problems = append(l.problems, Problem{Pos: next.Pos, Message: fmt.Sprintf(
					"schemas.%s.%s.%s: not %s compatible with version %s: at data%s, %s",
					pathString([]string{next.Domain}), pathString([]string{next.Event}), pathString([]string{next.Version}),
					next.Compatibility, prev.Version, b.Path, b.Reason)})
			}
		}
	}
}

func versionNumber(s *Schema) int {
	n, _ := strconv.Atoi(s.Version)
	return n
}

type partnerData struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	URL  string `json:"url"`
	Auth struct {
		Kind     string   `json:"kind"`
		Header   string   `json:"header"`
		Secret   string   `json:"secret"`
		TokenURL string   `json:"token_url"`
		ClientID string   `json:"client_id"`
		Scopes   []string `json:"scopes"`
	} `json:"auth"`
	SigningSecret string            `json:"signing_secret"`
	Contact       string            `json:"contact"`
	Metadata      map[string]string `json:"metadata"`
	RateLimit     *RateLimit        `json:"rate_limit"`
	MaxInFlight   int               `json:"max_in_flight"`
}

func (l *loader) partners(root cue.Value, c *Catalog) {
	l.each(root.LookupPath(cue.ParsePath("partners")), func(_ string, v cue.Value) {
		var d partnerData
		if !l.concrete(v, &d) {
			return
		}
		c.Partners = append(c.Partners, &Partner{
			ID: d.ID, Name: d.Name, URL: d.URL,
			Auth: Auth{Kind: d.Auth.Kind, Header: d.Auth.Header, Secret: d.Auth.Secret,
				TokenURL: d.Auth.TokenURL, ClientID: d.Auth.ClientID, Scopes: d.Auth.Scopes},
			SigningSecret: d.SigningSecret, Contact: d.Contact, RateLimit: d.RateLimit, MaxInFlight: d.MaxInFlight, Metadata: d.Metadata,
			Pos: toPos(declPos(v)),
		})
	})
}

type subscriptionData struct {
	Partner        string            `json:"partner"`
	Domain         string            `json:"domain"`
	Event          string            `json:"event"`
	Version        string            `json:"version"`
	Description    string            `json:"description"`
	Mode           string            `json:"mode"`
	Retry          *RetryPolicy      `json:"retry"`
	Filter         json.RawMessage   `json:"filter"`
	Transform      json.RawMessage   `json:"transform"`
	Metadata       map[string]string `json:"metadata"`
	AllowSensitive bool              `json:"allow_sensitive"`
}

// subscriptions decodes subscriptions and checks that each refers to a
// partner and a schema of this catalog, once per (partner, schema).
func (l *loader) subscriptions(root cue.Value, c *Catalog) {
	// References resolve against what is declared, valid or not, so an
	// invalid partner is reported once, not again by each subscription.
	partners := map[string]bool{}
	l.each(root.LookupPath(cue.ParsePath("partners")), func(id string, _ cue.Value) { partners[id] = true })
	compiled := map[string]*Schema{}
	for _, s := range c.Schemas {
		compiled[s.ID()] = s
	}
	schemas := map[string]bool{}
	l.each(root.LookupPath(cue.ParsePath("schemas")), func(d string, dv cue.Value) {
		l.each(dv, func(e string, ev cue.Value) {
			l.each(ev, func(v string, _ cue.Value) { schemas[SchemaID(d, e, v)] = true })
		})
	})
	seen := map[string]string{}
	l.each(root.LookupPath(cue.ParsePath("subscriptions")), func(name string, v cue.Value) {
		var d subscriptionData
		if !l.concrete(v, &d) {
			return
		}
		s := &Subscription{Name: name, PartnerID: d.Partner, Domain: d.Domain, Event: d.Event, Version: d.Version,
			Description: d.Description, Mode: d.Mode, Retry: d.Retry, Filter: d.Filter, Transform: d.Transform,
			Metadata: d.Metadata, AllowSensitive: d.AllowSensitive, Pos: toPos(declPos(v))}
		pos := declPos(v)
		at := "subscriptions." + pathString([]string{name})
		ok := true
		if !partners[s.PartnerID] {
			p := declPos(v.LookupPath(cue.ParsePath("partner")))
			l.addf(p, "%s.partner: no partner %q in the catalog", at, s.PartnerID)
			ok = false
		}
		if !schemas[s.SchemaID()] {
			l.addf(declPos(v.LookupPath(cue.ParsePath("event"))), "%s: no schema %s/%s version %s in the catalog", at, s.Domain, s.Event, s.Version)
			ok = false
		}
		if len(s.Filter) > 0 {
			if _, err := filter.Compile(s.Filter); err != nil {
				l.addf(declPos(v.LookupPath(cue.ParsePath("filter"))), "%s.%v", at, err)
				ok = false
			}
		}
		if len(s.Transform) > 0 {
			if sc := compiled[s.SchemaID()]; sc != nil {
				tr, err := transform.Compile(s.Transform)
				for _, path := range trPaths(tr, err) {
					if !hasPath(sc.JSONSchema, path) {
						l.addf(declPos(v.LookupPath(cue.ParsePath("transform"))), "%s.transform: data.%s is not a field of %s/%s version %s", at, path, s.Domain, s.Event, s.Version)
						ok = false
					}
				}
			}
		}
		if prev, dup := seen[s.ID()]; dup {
			l.addf(pos, "%s: partner %s already subscribes to %s/%s version %s in subscriptions.%s", at, s.PartnerID, s.Domain, s.Event, s.Version, pathString([]string{prev}))
			ok = false
		}
		seen[s.ID()] = name
		if ok {
			c.Subscriptions = append(c.Subscriptions, s)
		}
	})
}

func digest(files []sourceFile) string {
	m := make(map[string][]byte, len(files))
	for _, f := range files {
		m[f.name] = f.src
	}
	return Digest(m)
}

// Digest identifies a catalog's content: "sha256:" and the first 16 hex
// digits of a digest over every file's name and bytes, in name order.
func Digest(files map[string][]byte) string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(files[n]))
		h.Write(files[n])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
}

func toPos(p token.Pos) Pos {
	if !p.IsValid() {
		return Pos{}
	}
	return Pos{Filename: p.Filename(), Line: p.Line(), Column: p.Column()}
}

func selectors(path []string) []cue.Selector {
	sels := make([]cue.Selector, len(path))
	for i, p := range path {
		if strings.HasPrefix(p, "#") {
			sels[i] = cue.Def(p)
		} else {
			sels[i] = cue.Str(unquote(p))
		}
	}
	return sels
}

func unquote(s string) string {
	if u, err := strconv.Unquote(s); err == nil {
		return u
	}
	return s
}

// pathString renders a CUE path, quoting labels that are not identifiers.
func pathString(path []string) string {
	parts := make([]string, len(path))
	for i, p := range path {
		p = unquote(p)
		if ast.IsValidIdent(p) {
			parts[i] = p
		} else {
			parts[i] = strconv.Quote(p)
		}
	}
	return strings.Join(parts, ".")
}

// declPos is where v is declared in a catalog file: of the conjuncts that
// make v, the first that does not come from schemas.cue.
func declPos(v cue.Value) token.Pos {
	var found token.Pos
	var walk func(v cue.Value, depth int)
	walk = func(v cue.Value, depth int) {
		if found.IsValid() || depth > 8 {
			return
		}
		if p := v.Pos(); p.IsValid() && p.Filename() != whp.DefinitionsFile {
			found = p
			return
		}
		if op, args := v.Expr(); op == cue.AndOp {
			for _, a := range args {
				walk(a, depth+1)
			}
		}
	}
	walk(v, 0)
	if !found.IsValid() {
		return v.Pos()
	}
	return found
}

func newCtx() *cue.Context { return cuecontext.New() }

func trPaths(t *transform.Transform, err error) []string {
	if err != nil {
		return nil // the CUE definition already checked its shape
	}
	return t.Paths()
}

// hasPath reports whether a dotted data path is a field the JSON Schema
// declares (through objects, and through the items of lists).
func hasPath(jsonSchema []byte, path string) bool {
	var node any
	if json.Unmarshal(jsonSchema, &node) != nil {
		return false
	}
	for _, k := range strings.Split(path, ".") {
		m, _ := node.(map[string]any)
		for {
			items, ok := m["items"].(map[string]any)
			if !ok {
				break
			}
			m = items
		}
		props, _ := m["properties"].(map[string]any)
		next, ok := props[k]
		if !ok {
			return false
		}
		node = next
	}
	return true
}

// sensitivePaths lists the fields of a payload marked @sensitive(),
// looking into structs and the elements of lists.
func sensitivePaths(v cue.Value, prefix []string) []string {
	var out []string
	if v.IncompleteKind() == cue.ListKind {
		return sensitivePaths(v.LookupPath(cue.MakePath(cue.AnyIndex)), prefix)
	}
	it, err := v.Fields(cue.Optional(true))
	if err != nil {
		return nil
	}
	for it.Next() {
		fv := it.Value()
		path := append(append([]string(nil), prefix...), it.Selector().Unquoted())
		if attr := fv.Attribute("sensitive"); attr.Err() == nil {
			out = append(out, strings.Join(path, "."))
			continue
		}
		out = append(out, sensitivePaths(fv, path)...)
	}
	sort.Strings(out)
	return out
}
