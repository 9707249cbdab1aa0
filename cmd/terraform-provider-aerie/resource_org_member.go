package main

import (
	"context"
	"regexp"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// memberResource manages one person's membership: an existing member's role,
// or an invitation emailed to someone who is not a member yet.
type memberResource struct{ configured }

type memberModel struct {
	ID     types.String `tfsdk:"id"`
	Email  types.String `tfsdk:"email"`
	Role   types.String `tfsdk:"role"`
	UserID types.String `tfsdk:"user_id"`
	Status types.String `tfsdk:"status"`
}

var (
	_ resource.ResourceWithConfigure   = (*memberResource)(nil)
	_ resource.ResourceWithImportState = (*memberResource)(nil)
)

func (r *memberResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_org_member"
}

func (r *memberResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "A member of the org and their role. If the email is not a member yet, creating the resource emails an " +
			"invitation (status \"invited\") and the person becomes a member when they accept it (status \"member\"). " +
			"Destroying it removes the member (the last owner cannot be removed).",
		Attributes: map[string]schema.Attribute{
			"id": computedString("The member's email, lower-cased."),
			"email": schema.StringAttribute{Required: true, Description: "The person's email. Changing it replaces the member.",
				PlanModifiers: replaceOnChange(),
				Validators:    []validator.String{stringvalidator.RegexMatches(emailPattern, "must be an email address")}},
			"role": schema.StringAttribute{Required: true, Description: "owner, admin or viewer (never above the API key's own role).",
				Validators: []validator.String{stringvalidator.OneOf("owner", "admin", "viewer")}},
			"user_id": computedString("The user's ID once a member (null while invited)."),
			"status":  computedString("member, or invited while the invitation is pending."),
		},
	}
}

// find returns the member with email (or user ID) ref.
func (r *memberResource) find(ctx context.Context, ref string) (Member, bool, error) {
	ms, err := r.b.Members(ctx)
	if err != nil {
		return Member{}, false, err
	}
	for _, m := range ms {
		if strings.EqualFold(m.Email, ref) || m.UserID == ref {
			return m, true, nil
		}
	}
	return Member{}, false, nil
}

func (m *memberModel) fill(mb Member) {
	m.ID = types.StringValue(strings.ToLower(mb.Email))
	if !strings.EqualFold(m.Email.ValueString(), mb.Email) {
		m.Email = types.StringValue(mb.Email)
	}
	m.Role = types.StringValue(mb.Role)
	m.UserID = types.StringValue(mb.UserID)
	m.Status = types.StringValue("member")
}

// ensure makes the plan's role true: set it on a member, or invite.
func (r *memberResource) ensure(ctx context.Context, plan *memberModel) error {
	email, role := plan.Email.ValueString(), plan.Role.ValueString()
	mb, ok, err := r.find(ctx, email)
	if err != nil {
		return err
	}
	if ok {
		if mb.Role != role {
			if mb, err = r.b.SetMemberRole(ctx, mb.UserID, role); err != nil {
				return err
			}
		}
		plan.fill(mb)
		return nil
	}
	if err := r.b.Invite(ctx, email, role); err != nil {
		return err
	}
	plan.ID = types.StringValue(strings.ToLower(email))
	plan.UserID = types.StringNull()
	plan.Status = types.StringValue("invited")
	return nil
}

func (r *memberResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan memberModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if err := r.ensure(ctx, &plan); err != nil {
		addAPIError(&resp.Diagnostics, "add member "+plan.Email.ValueString(), err, map[string]string{"email": "email", "role": "role"})
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *memberResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var st memberModel
	resp.Diagnostics.Append(req.State.Get(ctx, &st)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ref := st.Email.ValueString()
	if ref == "" {
		ref = st.ID.ValueString() // import
	}
	mb, ok, err := r.find(ctx, ref)
	if err != nil {
		apiError(&resp.Diagnostics, "read members", err)
		return
	}
	switch {
	case ok:
		st.fill(mb)
	case st.Status.ValueString() == "invited":
		// Still pending: the API lists no invitations, so keep what we asked for.
	default:
		resp.State.RemoveResource(ctx)
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &st)...)
}

func (r *memberResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan memberModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if err := r.ensure(ctx, &plan); err != nil {
		addAPIError(&resp.Diagnostics, "change the role of "+plan.Email.ValueString(), err, map[string]string{"role": "role"})
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *memberResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var st memberModel
	resp.Diagnostics.Append(req.State.Get(ctx, &st)...)
	if resp.Diagnostics.HasError() {
		return
	}
	mb, ok, err := r.find(ctx, st.Email.ValueString())
	if err != nil {
		apiError(&resp.Diagnostics, "read members", err)
		return
	}
	if !ok {
		if st.Status.ValueString() == "invited" {
			resp.Diagnostics.AddWarning("Invitation left pending",
				"The invitation to "+st.Email.ValueString()+" cannot be withdrawn through the API; it expires 7 days after it was sent.")
		}
		return
	}
	if err := r.b.RemoveMember(ctx, mb.UserID); err != nil && !isNotFound(err) {
		apiError(&resp.Diagnostics, "remove member "+st.Email.ValueString(), err)
	}
}

// ImportState takes the member's email or user ID.
func (r *memberResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	mb, ok, err := r.find(ctx, req.ID)
	if err != nil {
		apiError(&resp.Diagnostics, "read members", err)
		return
	}
	if !ok {
		resp.Diagnostics.AddError("Cannot import aerie_org_member", req.ID+" is not a member of the org (import takes a member's email or user ID)")
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), strings.ToLower(mb.Email))...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("email"), mb.Email)...)
}

// emailPattern is a loose check; the API validates for real.
var emailPattern = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
