package infra

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// No Terraform binary or provider can be fetched here, so the proof that
// infra/ meets the plan is these tests: they parse every .tf with hcl/v2
// and check each requirement on the syntax itself.

// file is one parsed .tf file.
type file struct {
	path string
	src  []byte
	body *hclsyntax.Body
}

// stack is the .tf files of one directory (a module or an env).
type stack struct {
	dir   string
	files []file
}

func load(t *testing.T, dir string) stack {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no .tf files in %s (%v)", dir, err)
	}
	sort.Strings(paths)
	p := hclparse.NewParser()
	s := stack{dir: dir}
	for _, path := range paths {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f, diags := p.ParseHCL(src, path)
		if diags.HasErrors() {
			t.Fatalf("%s: %s", path, diags.Error())
		}
		s.files = append(s.files, file{path: path, src: src, body: f.Body.(*hclsyntax.Body)})
	}
	return s
}

// blocks returns the top-level blocks of a type whose labels start with
// labels.
func (s stack) blocks(typ string, labels ...string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, f := range s.files {
		for _, b := range f.body.Blocks {
			if b.Type != typ || len(b.Labels) < len(labels) {
				continue
			}
			match := true
			for i, l := range labels {
				match = match && b.Labels[i] == l
			}
			if match {
				out = append(out, b)
			}
		}
	}
	return out
}

// resource returns the one resource of a type and name, failing the test
// if it is missing.
func (s stack) resource(t *testing.T, typ, name string) *hclsyntax.Block {
	t.Helper()
	bs := s.blocks("resource", typ, name)
	if len(bs) != 1 {
		t.Fatalf("%s: want resource %s.%s", s.dir, typ, name)
		return nil
	}
	return bs[0]
}

// local returns the expression of a local value.
func (s stack) local(t *testing.T, name string) hclsyntax.Expression {
	t.Helper()
	for _, b := range s.blocks("locals") {
		if a, ok := b.Body.Attributes[name]; ok {
			return a.Expr
		}
	}
	t.Fatalf("%s: no local %s", s.dir, name)
	return nil
}

// source is the text of an expression.
func (s stack) source(e hclsyntax.Expression) string {
	r := e.Range()
	for _, f := range s.files {
		if f.path == r.Filename {
			return string(r.SliceBytes(f.src))
		}
	}
	return ""
}

// attr returns a block's attribute expression (nested blocks by path:
// "encryption_info.encryption_in_transit.client_broker").
func attr(b *hclsyntax.Block, path string) (hclsyntax.Expression, bool) {
	parts := strings.Split(path, ".")
	body := b.Body
	for _, p := range parts[:len(parts)-1] {
		var next *hclsyntax.Body
		for _, nb := range body.Blocks {
			if nb.Type == p {
				next = nb.Body
				break
			}
		}
		if next == nil {
			return nil, false
		}
		body = next
	}
	a, ok := body.Attributes[parts[len(parts)-1]]
	if !ok {
		return nil, false
	}
	return a.Expr, true
}

// constants is the evaluation context of constant: no variables, and the
// conversion functions Terraform code uses in literal values.
var constants = &hcl.EvalContext{Functions: map[string]function.Function{
	"toset":  stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
	"tolist": stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
	"tomap":  stdlib.MakeToFunc(cty.Map(cty.DynamicPseudoType)),
}}

// constant evaluates an expression that holds no references.
func constant(t *testing.T, e hclsyntax.Expression) cty.Value {
	t.Helper()
	v, diags := e.Value(constants)
	if diags.HasErrors() {
		t.Fatalf("%s: not a constant: %s", e.Range(), diags.Error())
	}
	return v
}

// want checks that a block's attribute is the constant want.
func want(t *testing.T, b *hclsyntax.Block, path string, want cty.Value) {
	t.Helper()
	e, ok := attr(b, path)
	if !ok {
		t.Errorf("%s %v: no %s", b.Type, b.Labels, path)
		return
	}
	if got := constant(t, e); !got.RawEquals(want) {
		t.Errorf("%s %v: %s = %#v, want %#v", b.Type, b.Labels, path, got, want)
	}
}

// hasBlock reports whether a block has a nested block at path.
func hasBlock(b *hclsyntax.Block, path string) bool {
	body := b.Body
	for _, p := range strings.Split(path, ".") {
		var next *hclsyntax.Body
		for _, nb := range body.Blocks {
			if nb.Type == p || (nb.Type == "dynamic" && len(nb.Labels) == 1 && nb.Labels[0] == p) {
				next = nb.Body
				break
			}
		}
		if next == nil {
			return false
		}
		body = next
	}
	return true
}

// variableDefault is the default of a variable of the stack.
func (s stack) variableDefault(t *testing.T, name string) cty.Value {
	t.Helper()
	bs := s.blocks("variable", name)
	if len(bs) != 1 {
		t.Fatalf("%s: no variable %s", s.dir, name)
	}
	e, ok := bs[0].Body.Attributes["default"]
	if !ok {
		t.Fatalf("%s: variable %s has no default", s.dir, name)
	}
	return constant(t, e.Expr)
}
