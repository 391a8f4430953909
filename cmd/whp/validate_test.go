package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/whp-dev/whp/internal/gittest"
)

const v1 = `package whp
schemas: shop: "order.placed": "1": {owner: "team-shop", payload: {id: string, amount: number & >0}}
`

// TestValidateBase walks a catalog repository through the rules a pull
// request is checked against with --base.
func TestValidateBase(t *testing.T) {
	repo := gittest.New(t)
	repo.Write("README.md", "catalog repo\n").Commit("init")
	dir := filepath.Join(repo.Dir, "catalog")

	validate := func(base string) (int, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"catalog", "validate", "--dir", dir, "--base", base}, &out, &errOut)
		return code, out.String() + errOut.String()
	}

	// The catalog does not exist at the base yet: nothing is published.
	repo.Write("catalog/shop.cue", v1)
	if code, out := validate("HEAD"); code != 0 || !strings.Contains(out, "does not exist at HEAD") {
		t.Fatalf("new catalog: exit %d\n%s", code, out)
	}
	repo.Commit("add order.placed v1")

	// Editing the published version in place is refused, with its place.
	repo.Write("catalog/shop.cue", strings.Replace(v1, ">0", ">=0", 1))
	code, out := validate("main")
	if code != 1 || !strings.Contains(out, "shop.cue:2:32") || !strings.Contains(out, "version 1 is published (in main (") {
		t.Fatalf("edited v1: exit %d\n%s", code, out)
	}

	// A compatible version 2 is accepted.
	v2 := v1 + `schemas: shop: "order.placed": "2": {owner: "team-shop", payload: {id: string, amount: number & >0, coupon?: string}}
`
	repo.Write("catalog/shop.cue", v2)
	if code, out := validate("main"); code != 0 {
		t.Fatalf("compatible v2: exit %d\n%s", code, out)
	}
	repo.Commit("add order.placed v2")
	repo.Tag("v2-published")

	// A breaking version 3 is refused and the field named.
	v3 := v2 + `schemas: shop: "order.placed": "3": {owner: "team-shop", payload: {id: string, amount: number & >0, coupon?: string, channel: string}}
`
	repo.Write("catalog/shop.cue", v3)
	if code, out := validate("v2-published"); code != 1 || !strings.Contains(out, "at data/channel, required by version 3, absent from version 2") {
		t.Fatalf("breaking v3: exit %d\n%s", code, out)
	}

	// An unknown base is an error, not a pass.
	repo.Write("catalog/shop.cue", v2)
	if code, out := validate("no-such-branch"); code != 1 || !strings.Contains(out, `resolve revision "no-such-branch"`) {
		t.Fatalf("unknown base: exit %d\n%s", code, out)
	}
}
