package main

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework-validators/datasourcevalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// instanceDataSource reads one instance by name (or ID).
type instanceDataSource struct{ b Backend }

var (
	_ datasource.DataSourceWithConfigure        = (*instanceDataSource)(nil)
	_ datasource.DataSourceWithConfigValidators = (*instanceDataSource)(nil)
)

func (d *instanceDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_instance"
}

func (d *instanceDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "Look up an existing instance by name (or ID).",
		Attributes: map[string]schema.Attribute{
			"name":                schema.StringAttribute{Optional: true, Computed: true, Description: "The instance's name (unique in the org)."},
			"id":                  schema.StringAttribute{Optional: true, Computed: true, Description: "The instance ID; give this or name."},
			"allow_anonymous":     schema.BoolAttribute{Computed: true, Description: "Whether devices may connect without a credential."},
			"deletion_protection": schema.BoolAttribute{Computed: true, Description: "Whether the instance is protected from deletion."},
			"suspended":           schema.BoolAttribute{Computed: true, Description: "Whether the instance is suspended."},
			"plan":                schema.StringAttribute{Computed: true, Description: "The plan its quotas come from."},
			"status":              schema.StringAttribute{Computed: true, Description: "provisioning, running, suspended or deleting."},
			"node_id":             schema.StringAttribute{Computed: true, Description: "The data-plane node serving it."},
			"username_format":     schema.StringAttribute{Computed: true, Description: "How devices write their MQTT username."},
			"endpoints":           schema.ObjectAttribute{Computed: true, AttributeTypes: endpointTypes, Description: "mqtt, mqtts, ws and wss URLs."},
			"quotas":              schema.ObjectAttribute{Computed: true, AttributeTypes: quotaTypes(), Description: "The effective quotas (0 = unlimited)."},
			"created_at":          schema.StringAttribute{Computed: true, Description: "Creation time (RFC 3339)."},
		},
	}
}

func (d *instanceDataSource) ConfigValidators(context.Context) []datasource.ConfigValidator {
	return []datasource.ConfigValidator{datasourcevalidator.ExactlyOneOf(path.MatchRoot("name"), path.MatchRoot("id"))}
}

func (d *instanceDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.b = backendFrom(req.ProviderData, &resp.Diagnostics)
}

func (d *instanceDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m instanceModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	var in Instance
	var err error
	if !m.ID.IsNull() {
		in, err = d.b.GetInstance(ctx, m.ID.ValueString())
	} else {
		in, err = d.b.FindInstance(ctx, m.Name.ValueString())
	}
	if isNotFound(err) {
		at, v := path.Root("name"), m.Name.ValueString()
		if !m.ID.IsNull() {
			at, v = path.Root("id"), m.ID.ValueString()
		}
		resp.Diagnostics.AddAttributeError(at, "No such instance", "the org has no instance "+v)
		return
	}
	if err != nil {
		apiError(&resp.Diagnostics, "read instance", err)
		return
	}
	m.fill(in)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// plansDataSource lists the service's plans.
type plansDataSource struct{ b Backend }

var _ datasource.DataSourceWithConfigure = (*plansDataSource)(nil)

func (d *plansDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_plans"
}

var planTypes = map[string]attr.Type{
	"id": types.StringType, "name": types.StringType, "currency": types.StringType,
	"base_cents": types.Int64Type, "quotas": types.ObjectType{AttrTypes: quotaTypes()},
}

func (d *plansDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "The service's plans, smallest first, with their price and the quotas each grants.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Computed: true, Description: "Always \"plans\"."},
			"plans": schema.ListNestedAttribute{Computed: true, Description: "Every plan.",
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"id":         schema.StringAttribute{Computed: true, Description: "The plan ID, e.g. free."},
					"name":       schema.StringAttribute{Computed: true, Description: "Display name."},
					"currency":   schema.StringAttribute{Computed: true, Description: "ISO currency of the price."},
					"base_cents": schema.Int64Attribute{Computed: true, Description: "Monthly base price in cents."},
					"quotas":     schema.ObjectAttribute{Computed: true, AttributeTypes: quotaTypes(), Description: "The per-instance quotas the plan grants (0 = unlimited)."},
				}}},
		},
	}
}

func (d *plansDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.b = backendFrom(req.ProviderData, &resp.Diagnostics)
}

func (d *plansDataSource) Read(ctx context.Context, _ datasource.ReadRequest, resp *datasource.ReadResponse) {
	ps, err := d.b.Plans(ctx)
	if err != nil {
		apiError(&resp.Diagnostics, "list plans", err)
		return
	}
	var vals []attr.Value
	for _, p := range ps {
		vals = append(vals, types.ObjectValueMust(planTypes, map[string]attr.Value{
			"id": types.StringValue(p.ID), "name": types.StringValue(p.Name), "currency": types.StringValue(p.Currency),
			"base_cents": types.Int64Value(p.BaseCents), "quotas": quotasValue(p.Quotas),
		}))
	}
	list, diags := types.ListValue(types.ObjectType{AttrTypes: planTypes}, vals)
	resp.Diagnostics.Append(diags...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), "plans")...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("plans"), list)...)
}
