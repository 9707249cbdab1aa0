package main

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/objectplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// instanceIDPattern is the shape of an instance ID.
var instanceIDPattern = regexp.MustCompile(`^i-[a-z0-9]{10}$`)

type instanceResource struct{ configured }

type instanceModel struct {
	ID                 types.String `tfsdk:"id"`
	Name               types.String `tfsdk:"name"`
	AllowAnonymous     types.Bool   `tfsdk:"allow_anonymous"`
	DeletionProtection types.Bool   `tfsdk:"deletion_protection"`
	Suspended          types.Bool   `tfsdk:"suspended"`
	Plan               types.String `tfsdk:"plan"`
	Status             types.String `tfsdk:"status"`
	NodeID             types.String `tfsdk:"node_id"`
	UsernameFormat     types.String `tfsdk:"username_format"`
	Endpoints          types.Object `tfsdk:"endpoints"`
	Quotas             types.Object `tfsdk:"quotas"`
	CreatedAt          types.String `tfsdk:"created_at"`
}

var (
	_ resource.ResourceWithConfigure   = (*instanceResource)(nil)
	_ resource.ResourceWithImportState = (*instanceResource)(nil)
)

func (r *instanceResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_instance"
}

// instanceNameValidators are the API's rules for an instance name.
func instanceNameValidators() []validatorString {
	return []validatorString{stringvalidator.LengthBetween(1, 63)}
}

func (r *instanceResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "An MQTT instance: a tenant broker placed on a data-plane node. Apply returns once the node serves it.",
		Attributes: map[string]schema.Attribute{
			"id":   computedString("The instance ID (i-…); devices send <username>@<id>."),
			"name": schema.StringAttribute{Required: true, Description: "Unique within the org, 1–63 characters. Renaming is in place.", Validators: instanceNameValidators()},
			"allow_anonymous": schema.BoolAttribute{Optional: true, Computed: true, Default: booldefault.StaticBool(false),
				Description: "Let devices connect without a credential. Default false."},
			"deletion_protection": schema.BoolAttribute{Optional: true, Computed: true, Default: booldefault.StaticBool(false),
				Description: "While true, the instance cannot be deleted (destroy fails). Default false."},
			"suspended": schema.BoolAttribute{Optional: true, Computed: true, Default: booldefault.StaticBool(false),
				Description: "Suspend the instance: live connections are closed and new ones refused. Default false."},
			"plan":            computedString("The org's plan the instance's quotas come from (change it with the org's subscription)."),
			"status":          schema.StringAttribute{Computed: true, Description: "provisioning, running, suspended or deleting."},
			"node_id":         computedString("The data-plane node serving the instance."),
			"username_format": computedString("How devices write their MQTT username, e.g. <username>@i-abc."),
			"endpoints": schema.ObjectAttribute{Computed: true, AttributeTypes: endpointTypes,
				Description:   "Where devices connect: mqtt, mqtts, ws and wss URLs (null for a listener the node does not run).",
				PlanModifiers: []planmodifier.Object{objectplanmodifier.UseStateForUnknown()}},
			"quotas": schema.ObjectAttribute{Computed: true, AttributeTypes: quotaTypes(),
				Description: "The effective quotas (0 = unlimited); set overrides with aerie_instance_quotas."},
			"created_at": computedString("Creation time (RFC 3339)."),
		},
	}
}

func (m *instanceModel) fill(in Instance) {
	m.ID = types.StringValue(in.ID)
	m.Name = types.StringValue(in.Name)
	m.AllowAnonymous = types.BoolValue(in.AllowAnonymous)
	m.DeletionProtection = types.BoolValue(in.DeletionProtection)
	m.Suspended = types.BoolValue(in.Status == "suspended")
	m.Plan = types.StringValue(in.Plan)
	m.Status = types.StringValue(in.Status)
	m.NodeID = types.StringValue(in.NodeID)
	m.UsernameFormat = types.StringValue(in.UsernameFormat)
	m.Endpoints = endpointsValue(in.Endpoints)
	m.Quotas = quotasValue(in.Quotas)
	m.CreatedAt = types.StringValue(in.CreatedAt.UTC().Format(time.RFC3339))
}

// waitRunning polls until the instance's node serves it (or it is
// suspended), so devices can connect as soon as apply returns.
func waitRunning(ctx context.Context, b Backend, id string) (Instance, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		in, err := b.GetInstance(ctx, id)
		if err != nil {
			return in, err
		}
		if in.Status == "running" || in.Status == "suspended" {
			return in, nil
		}
		if time.Now().After(deadline) {
			return in, fmt.Errorf("instance %s still %s after 2 minutes", id, in.Status)
		}
		select {
		case <-ctx.Done():
			return in, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (r *instanceResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan instanceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	in, err := r.b.CreateInstance(ctx, plan.Name.ValueString(), plan.AllowAnonymous.ValueBool(), plan.DeletionProtection.ValueBool())
	if err != nil {
		addAPIError(&resp.Diagnostics, "create instance "+plan.Name.ValueString(), err, instanceFields)
		return
	}
	want := plan.Suspended.ValueBool()
	// Record it at once: a failure below must not orphan the instance.
	plan.fill(in)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	if want {
		s := true
		if in, err = r.b.UpdateInstance(ctx, in.ID, InstanceChange{Suspended: &s}); err != nil {
			apiError(&resp.Diagnostics, "suspend instance "+in.ID, err)
			return
		}
	}
	if in, err = waitRunning(ctx, r.b, in.ID); err != nil {
		apiError(&resp.Diagnostics, "wait for instance "+in.ID, err)
		return
	}
	plan.fill(in)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *instanceResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var st instanceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &st)...)
	if resp.Diagnostics.HasError() {
		return
	}
	in, err := r.b.GetInstance(ctx, st.ID.ValueString())
	if isNotFound(err) {
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		apiError(&resp.Diagnostics, "read instance "+st.ID.ValueString(), err)
		return
	}
	st.fill(in)
	resp.Diagnostics.Append(resp.State.Set(ctx, &st)...)
}

func (r *instanceResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, st instanceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &st)...)
	if resp.Diagnostics.HasError() {
		return
	}
	var ch InstanceChange
	if !plan.Name.Equal(st.Name) {
		ch.Name = plan.Name.ValueStringPointer()
	}
	if !plan.AllowAnonymous.Equal(st.AllowAnonymous) {
		ch.AllowAnonymous = plan.AllowAnonymous.ValueBoolPointer()
	}
	if !plan.DeletionProtection.Equal(st.DeletionProtection) {
		ch.DeletionProtection = plan.DeletionProtection.ValueBoolPointer()
	}
	if !plan.Suspended.Equal(st.Suspended) {
		ch.Suspended = plan.Suspended.ValueBoolPointer()
	}
	id := st.ID.ValueString()
	in, err := r.b.UpdateInstance(ctx, id, ch)
	if err != nil {
		addAPIError(&resp.Diagnostics, "update instance "+id, err, instanceFields)
		return
	}
	if ch.Suspended != nil && !*ch.Suspended {
		if in, err = waitRunning(ctx, r.b, id); err != nil {
			apiError(&resp.Diagnostics, "wait for instance "+id, err)
			return
		}
	}
	plan.fill(in)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *instanceResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var st instanceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &st)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if err := r.b.DeleteInstance(ctx, st.ID.ValueString()); err != nil && !isNotFound(err) {
		apiError(&resp.Diagnostics, "delete instance "+st.ID.ValueString(), err)
	}
}

// ImportState takes an instance ID (i-…) or the instance's name.
func (r *instanceResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	id := req.ID
	if !instanceIDPattern.MatchString(id) {
		in, err := r.b.FindInstance(ctx, id)
		if err != nil {
			apiError(&resp.Diagnostics, "import instance "+id, err)
			return
		}
		id = in.ID
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), id)...)
}

// instanceFields maps API field names to the resource's attributes.
var instanceFields = map[string]string{
	"name": "name", "allow_anonymous": "allow_anonymous", "deletion_protection": "deletion_protection", "status": "suspended",
}
