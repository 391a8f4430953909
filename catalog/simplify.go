package catalog

import "encoding/json"

// foldable lists the JSON Schema keywords whose meaning does not depend on
// the schema object they sit in: an allOf of objects using only these, each
// keyword at most once (type aside), validates exactly like one object that
// holds them all.
var foldable = map[string]bool{
	"type": true, "minimum": true, "maximum": true, "exclusiveMinimum": true, "exclusiveMaximum": true,
	"multipleOf": true, "minLength": true, "maxLength": true, "pattern": true, "format": true,
	"enum": true, "const": true, "minItems": true, "maxItems": true, "uniqueItems": true,
}

// simplify folds the allOf lists CUE's generator writes for constraints
// such as `int & >=1` ({"allOf":[{"type":"number"},{"type":"integer","minimum":1}]})
// into a single object ({"type":"integer","minimum":1}). Each level of allOf
// costs the validator a sub-validation per value, so folding makes ingest
// validation measurably faster without changing what is valid.
func simplify(doc []byte) ([]byte, error) {
	var x any
	if err := json.Unmarshal(doc, &x); err != nil {
		return nil, err
	}
	return json.Marshal(fold(x))
}

func fold(x any) any {
	switch t := x.(type) {
	case []any:
		for i := range t {
			t[i] = fold(t[i])
		}
		return t
	case map[string]any:
		for k, v := range t {
			t[k] = fold(v)
		}
		all, ok := t["allOf"].([]any)
		if !ok {
			return t
		}
		merged, ok := mergeAll(all)
		if !ok {
			return t
		}
		for k, v := range merged {
			if _, clash := t[k]; clash && k != "type" {
				return t
			}
			if k == "type" {
				if old, has := t["type"]; has {
					typ, ok := intersectTypes(old, v)
					if !ok {
						return t
					}
					v = typ
				}
			}
			merged[k] = v
		}
		delete(t, "allOf")
		for k, v := range merged {
			t[k] = v
		}
		return t
	default:
		return x
	}
}

func mergeAll(all []any) (map[string]any, bool) {
	out := map[string]any{}
	for _, s := range all {
		m, ok := s.(map[string]any)
		if !ok {
			return nil, false
		}
		for k, v := range m {
			if !foldable[k] {
				return nil, false
			}
			old, has := out[k]
			switch {
			case !has:
				out[k] = v
			case k == "type":
				typ, ok := intersectTypes(old, v)
				if !ok {
					return nil, false
				}
				out[k] = typ
			default:
				return nil, false
			}
		}
	}
	return out, true
}

// intersectTypes intersects two "type" values when the result is one type;
// "integer" is a subset of "number".
func intersectTypes(a, b any) (any, bool) {
	as, aok := a.(string)
	bs, bok := b.(string)
	if !aok || !bok {
		return nil, false
	}
	switch {
	case as == bs:
		return as, true
	case as == "number" && bs == "integer", as == "integer" && bs == "number":
		return "integer", true
	}
	return nil, false
}
