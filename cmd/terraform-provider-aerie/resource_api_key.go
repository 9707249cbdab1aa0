package main

import (
	"context"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-validators/setvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/setplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

type apiKeyResource struct{ configured }

type apiKeyModel struct {
	ID        types.String `tfsdk:"id"`
	Name      types.String `tfsdk:"name"`
	Scopes    types.Set    `tfsdk:"scopes"`
	ExpiresAt types.String `tfsdk:"expires_at"`
	Secret    types.String `tfsdk:"secret"`
	Prefix    types.String `tfsdk:"prefix"`
	CreatedAt types.String `tfsdk:"created_at"`
}

var (
	_ resource.ResourceWithConfigure   = (*apiKeyResource)(nil)
	_ resource.ResourceWithImportState = (*apiKeyResource)(nil)
)

func (r *apiKeyResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_api_key"
}

func (r *apiKeyResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "An org API key for the REST API, aeriectl or Terraform. Keys cannot be edited: any change replaces the key (the old one is revoked).",
		Attributes: map[string]schema.Attribute{
			"id": computedString("The key ID."),
			"name": schema.StringAttribute{Required: true, Description: "A label, 1–100 characters.", PlanModifiers: replaceOnChange(),
				Validators: []validator.String{stringvalidator.LengthBetween(1, 100)}},
			"scopes": schema.SetAttribute{Required: true, ElementType: types.StringType,
				Description:   "Any of consume, read, write, admin (never above the role of the key's creator); consume only reads topics' messages as consumer groups.",
				PlanModifiers: []planmodifier.Set{setplanmodifier.RequiresReplace()},
				Validators: []validator.Set{setvalidator.SizeAtLeast(1),
					setvalidator.ValueStringsAre(stringvalidator.OneOf("consume", "read", "write", "admin"))}},
			"expires_at": schema.StringAttribute{Optional: true, PlanModifiers: replaceOnChange(),
				Description: "When the key stops working (RFC 3339); never when absent."},
			"secret": schema.StringAttribute{Computed: true, Sensitive: true, PlanModifiers: keepState(),
				Description: "The full key (aer_<prefix>_<secret>); known only to the Terraform run that created it (null after import)."},
			"prefix":     computedString("The key's visible prefix."),
			"created_at": computedString("Creation time (RFC 3339)."),
		},
	}
}

func (m *apiKeyModel) fill(k APIKey) {
	m.ID = types.StringValue(k.ID)
	m.Name = types.StringValue(k.Name)
	m.Scopes, _ = types.SetValueFrom(context.Background(), types.StringType, k.Scopes)
	m.Prefix = types.StringValue(k.Prefix)
	m.CreatedAt = types.StringValue(k.CreatedAt.UTC().Format(time.RFC3339))
	exp := timeValue(k.ExpiresAt)
	if exp.IsNull() || m.ExpiresAt.IsNull() || !sameTime(exp.ValueString(), m.ExpiresAt.ValueString()) {
		m.ExpiresAt = exp
	}
}

func (r *apiKeyResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan apiKeyModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	exp := parseTime(plan.ExpiresAt, path.Root("expires_at"), &resp.Diagnostics)
	var scopes []string
	resp.Diagnostics.Append(plan.Scopes.ElementsAs(ctx, &scopes, false)...)
	if resp.Diagnostics.HasError() {
		return
	}
	k, err := r.b.CreateAPIKey(ctx, plan.Name.ValueString(), scopes, exp)
	if err != nil {
		addAPIError(&resp.Diagnostics, "create API key "+plan.Name.ValueString(), err,
			map[string]string{"name": "name", "scopes": "scopes", "expires_at": "expires_at"})
		return
	}
	plan.fill(k)
	plan.Secret = types.StringValue(k.Secret)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *apiKeyResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var st apiKeyModel
	resp.Diagnostics.Append(req.State.Get(ctx, &st)...)
	if resp.Diagnostics.HasError() {
		return
	}
	k, err := r.b.GetAPIKey(ctx, st.ID.ValueString())
	if isNotFound(err) {
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		apiError(&resp.Diagnostics, "read API key "+st.ID.ValueString(), err)
		return
	}
	st.fill(k)
	resp.Diagnostics.Append(resp.State.Set(ctx, &st)...)
}

// Update never runs: every argument forces a replacement.
func (r *apiKeyResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan apiKeyModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *apiKeyResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var st apiKeyModel
	resp.Diagnostics.Append(req.State.Get(ctx, &st)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if err := r.b.DeleteAPIKey(ctx, st.ID.ValueString()); err != nil && !isNotFound(err) {
		apiError(&resp.Diagnostics, "revoke API key "+st.ID.ValueString(), err)
	}
}

// ImportState takes the key ID.
func (r *apiKeyResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}
