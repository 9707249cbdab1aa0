package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	providerschema "github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
)

// TestDocsCoverEverySchema keeps docs/ in step with the schemas: every
// resource and data source has its page, and the page names each attribute.
func TestDocsCoverEverySchema(t *testing.T) {
	ctx := context.Background()
	p := &aerieProvider{version: "test"}
	check := func(page string, attrs []string) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("docs", page))
		if err != nil {
			t.Errorf("no page %s: %v", page, err)
			return
		}
		for _, a := range attrs {
			if !strings.Contains(string(b), "`"+a+"`") {
				t.Errorf("docs/%s does not describe `%s`", page, a)
			}
		}
	}
	var ps provider.SchemaResponse
	p.Schema(ctx, provider.SchemaRequest{}, &ps)
	check("index.md", keys(ps.Schema.Attributes))
	for _, f := range p.Resources(ctx) {
		r := f()
		var md resource.MetadataResponse
		r.Metadata(ctx, resource.MetadataRequest{ProviderTypeName: "aerie"}, &md)
		var sr resource.SchemaResponse
		r.Schema(ctx, resource.SchemaRequest{}, &sr)
		var names []string
		for n := range sr.Schema.Attributes {
			names = append(names, n)
		}
		check("resources/"+strings.TrimPrefix(md.TypeName, "aerie_")+".md", names)
	}
	for _, f := range p.DataSources(ctx) {
		d := f()
		var md datasource.MetadataResponse
		d.Metadata(ctx, datasource.MetadataRequest{ProviderTypeName: "aerie"}, &md)
		var sr datasource.SchemaResponse
		d.Schema(ctx, datasource.SchemaRequest{}, &sr)
		var names []string
		for n := range sr.Schema.Attributes {
			names = append(names, n)
		}
		check("data-sources/"+strings.TrimPrefix(md.TypeName, "aerie_")+".md", names)
	}
}

func keys(m map[string]providerschema.Attribute) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
