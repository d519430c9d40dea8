// The `models` export (contract 0.1.3): the schemas of the models this adaptor serves,
// read from the adaptor folder's models.json. Copy this package unchanged and edit
// models.json instead.
//
// build.sh builds for the world `described-adaptor` only when the folder has a
// models.json, and puts a copy of it next to this file for go:embed; without models.json
// the world is `adaptor` and this package is not compiled at all. The package name is
// fixed by `wit-bindgen go`, like export_octopus_adaptor_driver's.
package export_octopus_adaptor_models

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
	"wit_component/octopus_adaptor_models"
	"wit_component/octopus_adaptor_types"
)

//go:embed models.json
var declarations []byte

// declaration is one model in models.json (the format of crds/generated/models/*.json);
// the file holds one declaration or a list of them.
type declaration struct {
	ApiVersion     string          `json:"apiVersion"`
	Kind           string          `json:"kind"`
	Description    string          `json:"description"`
	Spec           json.RawMessage `json:"spec"`
	Status         json.RawMessage `json:"status"`
	ShortNames     []string        `json:"shortNames"`
	Categories     []string        `json:"categories"`
	PrinterColumns []struct {
		Name        string  `json:"name"`
		JsonPath    string  `json:"jsonPath"`
		Type        string  `json:"type"`
		Format      *string `json:"format"`
		Description *string `json:"description"`
		Priority    int32   `json:"priority"`
	} `json:"printerColumns"`
}

// DescribeModels answers `models.describe-models`. build.sh has checked that models.json
// is JSON; a declaration of the wrong shape panics here, which `octopus inspect` and
// `octopus crd` show at once.
func DescribeModels() []octopus_adaptor_models.ModelSchema {
	var decls []declaration
	text := bytes.TrimSpace(declarations)
	if len(text) > 0 && text[0] == '[' {
		must(json.Unmarshal(text, &decls))
	} else {
		decls = make([]declaration, 1)
		must(json.Unmarshal(text, &decls[0]))
	}
	out := make([]octopus_adaptor_models.ModelSchema, 0, len(decls))
	for _, d := range decls {
		s := octopus_adaptor_models.ModelSchema{
			Model:       octopus_adaptor_types.Model{ApiVersion: d.ApiVersion, Kind: d.Kind},
			Description: d.Description,
			Spec:        compact(d.Spec),
			Status:      compact(d.Status),
			ShortNames:  d.ShortNames,
			Categories:  d.Categories,
		}
		for _, c := range d.PrinterColumns {
			s.PrinterColumns = append(s.PrinterColumns, octopus_adaptor_models.PrinterColumn{
				Name:        c.Name,
				JsonPath:    c.JsonPath,
				Type:        c.Type,
				Format:      option(c.Format),
				Description: option(c.Description),
				Priority:    c.Priority,
			})
		}
		out = append(out, s)
	}
	return out
}

// compact is a schema as one line of JSON; absent or null (no status) is "".
func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if len(raw) == 0 || string(raw) == "null" || json.Compact(&b, raw) != nil {
		return ""
	}
	return b.String()
}

func option(s *string) witTypes.Option[string] {
	if s == nil {
		return witTypes.None[string]()
	}
	return witTypes.Some(*s)
}

func must(err error) {
	if err != nil {
		panic(fmt.Sprintf("models.json: %v", err))
	}
}
