package main

import (
	"context"
	"net/url"
	"os"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// aerieProvider is the Terraform provider for Aerie.
type aerieProvider struct {
	version string
	// connect builds the backend from the resolved configuration.
	connect func(ctx context.Context, cfg providerConfig) (Backend, error)
}

// providerConfig is the provider block after environment defaults.
type providerConfig struct {
	URL, APIKey, OrgID, UserAgent string
}

type providerModel struct {
	URL    types.String `tfsdk:"url"`
	APIKey types.String `tfsdk:"api_key"`
	OrgID  types.String `tfsdk:"org_id"`
}

var _ provider.Provider = (*aerieProvider)(nil)

func (p *aerieProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "aerie"
	resp.Version = p.version
}

func (p *aerieProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "Manage Aerie MQTT instances, device credentials, ACL rules, quotas, API keys and members as code.",
		Attributes: map[string]schema.Attribute{
			"url": schema.StringAttribute{
				Optional:    true,
				Description: "Base URL of the Aerie API, e.g. https://aerie.example.com. Defaults to the AERIE_URL environment variable.",
			},
			"api_key": schema.StringAttribute{
				Optional:    true,
				Sensitive:   true,
				Description: "An org API key (aer_<prefix>_<secret>). Defaults to the AERIE_API_KEY environment variable.",
			},
			"org_id": schema.StringAttribute{
				Optional:    true,
				Description: "The org to manage. Defaults to AERIE_ORG_ID, else the API key's own org.",
			},
		},
	}
}

func (p *aerieProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var m providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	pick := func(v types.String, env string, at string) string {
		if v.IsUnknown() {
			resp.Diagnostics.AddAttributeError(path.Root(at), "Unknown provider "+at,
				"The provider's "+at+" must be known when Terraform plans; set it to a literal, a variable or the "+env+" environment variable.")
			return ""
		}
		if !v.IsNull() {
			return v.ValueString()
		}
		return os.Getenv(env)
	}
	cfg := providerConfig{
		URL:       pick(m.URL, "AERIE_URL", "url"),
		APIKey:    pick(m.APIKey, "AERIE_API_KEY", "api_key"),
		OrgID:     pick(m.OrgID, "AERIE_ORG_ID", "org_id"),
		UserAgent: "terraform-provider-aerie/" + p.version + " terraform/" + req.TerraformVersion,
	}
	if resp.Diagnostics.HasError() {
		return
	}
	if cfg.URL == "" {
		resp.Diagnostics.AddAttributeError(path.Root("url"), "Missing Aerie URL",
			"Set url in the provider block or the AERIE_URL environment variable.")
	} else if u, err := url.Parse(cfg.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		resp.Diagnostics.AddAttributeError(path.Root("url"), "Invalid Aerie URL",
			"url must be an absolute http:// or https:// URL, got "+cfg.URL+".")
	}
	if cfg.APIKey == "" {
		resp.Diagnostics.AddAttributeError(path.Root("api_key"), "Missing Aerie API key",
			"Set api_key in the provider block or the AERIE_API_KEY environment variable (create one in the console under API keys).")
	}
	if resp.Diagnostics.HasError() {
		return
	}
	b, err := p.connect(ctx, cfg)
	if err != nil {
		resp.Diagnostics.AddError("Cannot reach the Aerie API", err.Error())
		return
	}
	resp.ResourceData = b
	resp.DataSourceData = b
}

func (p *aerieProvider) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{
		func() resource.Resource { return &instanceResource{} },
		func() resource.Resource { return &credentialResource{} },
		func() resource.Resource { return &aclRulesResource{} },
		func() resource.Resource { return &quotasResource{} },
		func() resource.Resource { return &apiKeyResource{} },
		func() resource.Resource { return &memberResource{} },
	}
}

func (p *aerieProvider) DataSources(context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{
		func() datasource.DataSource { return &instanceDataSource{} },
		func() datasource.DataSource { return &plansDataSource{} },
	}
}

// backendFrom takes the configured backend out of provider data; nil (and no
// diagnostic) before the provider is configured.
func backendFrom(data any, diags *diag.Diagnostics) Backend {
	if data == nil {
		return nil
	}
	b, ok := data.(Backend)
	if !ok {
		diags.AddError("Unexpected provider data", "the provider passed an unexpected type; this is a bug in the provider")
		return nil
	}
	return b
}
