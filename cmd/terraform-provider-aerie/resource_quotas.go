package main

import (
	"context"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// quotasResource manages an instance's quota overrides. Each attribute set
// is an override; one left out takes the plan's value.
type quotasResource struct{ configured }

var (
	_ resource.ResourceWithConfigure   = (*quotasResource)(nil)
	_ resource.ResourceWithImportState = (*quotasResource)(nil)
)

func (r *quotasResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_instance_quotas"
}

func (r *quotasResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	attrs := map[string]schema.Attribute{
		"id":          computedString("The instance ID."),
		"instance_id": instanceIDAttribute("The instance (aerie_instance.<name>.id)."),
		"effective": schema.ObjectAttribute{Computed: true, AttributeTypes: quotaTypes(),
			Description: "The quotas in force: the overrides above, the plan's value for the rest (0 = unlimited)."},
	}
	for _, n := range quotaNames {
		attrs[n] = schema.Int64Attribute{Optional: true,
			Validators:  []validator.Int64{int64validator.AtLeast(1)},
			Description: "Override of " + strings.ReplaceAll(n, "_", " ") + " (at least 1, at most what the plan grants); left out, the plan's value applies."}
	}
	resp.Schema = schema.Schema{
		Description: "Quota overrides of an instance, applied live. Each quota left out takes the plan's value; destroying the resource restores the plan's values.",
		Attributes:  attrs,
	}
}

// overrides reads the set quota attributes of src.
func overrides(ctx context.Context, get func(context.Context, path.Path, any) diag.Diagnostics, diags *diag.Diagnostics) map[string]int64 {
	q := map[string]int64{}
	for _, n := range quotaNames {
		var v types.Int64
		diags.Append(get(ctx, path.Root(n), &v)...)
		if !v.IsNull() && !v.IsUnknown() {
			q[n] = v.ValueInt64()
		}
	}
	return q
}

// write stores id, the overrides and the effective quotas in st.
func writeQuotas(ctx context.Context, st *tfsdk.State, id string, over map[string]int64, effective map[string]int64, diags *diag.Diagnostics) {
	diags.Append(st.SetAttribute(ctx, path.Root("id"), id)...)
	diags.Append(st.SetAttribute(ctx, path.Root("instance_id"), id)...)
	for _, n := range quotaNames {
		v := types.Int64Null()
		if x, ok := over[n]; ok {
			v = types.Int64Value(x)
		}
		diags.Append(st.SetAttribute(ctx, path.Root(n), v)...)
	}
	diags.Append(st.SetAttribute(ctx, path.Root("effective"), quotasValue(effective))...)
}

var quotaFields = func() map[string]string {
	m := map[string]string{}
	for _, n := range quotaNames {
		m[n] = n
	}
	return m
}()

func (r *quotasResource) set(ctx context.Context, plan tfsdk.Plan, st *tfsdk.State, diags *diag.Diagnostics) {
	var inst string
	diags.Append(plan.GetAttribute(ctx, path.Root("instance_id"), &inst)...)
	over := overrides(ctx, plan.GetAttribute, diags)
	if diags.HasError() {
		return
	}
	eff, err := r.b.SetQuotas(ctx, inst, over)
	if err != nil {
		addAPIError(diags, "set the quotas of "+inst, err, quotaFields)
		return
	}
	writeQuotas(ctx, st, inst, over, eff, diags)
}

func (r *quotasResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	r.set(ctx, req.Plan, &resp.State, &resp.Diagnostics)
}

func (r *quotasResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	r.set(ctx, req.Plan, &resp.State, &resp.Diagnostics)
}

// Read keeps as overrides the quotas the state manages and any other quota
// that differs from the plan's value (set out of band, or found on import),
// so drift shows in the plan.
func (r *quotasResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var id string
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("id"), &id)...)
	managed := overrides(ctx, req.State.GetAttribute, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	in, err := r.b.GetInstance(ctx, id)
	if isNotFound(err) {
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		apiError(&resp.Diagnostics, "read instance "+id, err)
		return
	}
	plans, err := r.b.Plans(ctx)
	if err != nil {
		apiError(&resp.Diagnostics, "read plans", err)
		return
	}
	var def map[string]int64
	for _, p := range plans {
		if p.ID == in.Plan || p.Name == in.Plan {
			def = p.Quotas
		}
	}
	over := map[string]int64{}
	for _, n := range quotaNames {
		_, was := managed[n]
		if was || (def != nil && in.Quotas[n] != def[n]) {
			over[n] = in.Quotas[n]
		}
	}
	writeQuotas(ctx, &resp.State, id, over, in.Quotas, &resp.Diagnostics)
}

func (r *quotasResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var id string
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("id"), &id)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if _, err := r.b.SetQuotas(ctx, id, map[string]int64{}); err != nil && !isNotFound(err) {
		apiError(&resp.Diagnostics, "reset the quotas of "+id, err)
	}
}

// ImportState takes the instance ID.
func (r *quotasResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	if !instanceIDPattern.MatchString(req.ID) {
		resp.Diagnostics.AddError("Invalid import ID", "import aerie_instance_quotas by instance ID (i-…), got "+req.ID)
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), req.ID)...)
}
