package main

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/aeriemq/aerie/internal/mqtttopic"
)

type aclRulesResource struct{ configured }

type aclRuleModel struct {
	Effect       types.String `tfsdk:"effect"`
	Action       types.String `tfsdk:"action"`
	Filter       types.String `tfsdk:"filter"`
	CredentialID types.String `tfsdk:"credential_id"`
}

type aclRulesModel struct {
	ID         types.String   `tfsdk:"id"`
	InstanceID types.String   `tfsdk:"instance_id"`
	Rules      []aclRuleModel `tfsdk:"rules"`
}

var (
	_ resource.ResourceWithConfigure   = (*aclRulesResource)(nil)
	_ resource.ResourceWithImportState = (*aclRulesResource)(nil)
)

func (r *aclRulesResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_acl_rules"
}

func (r *aclRulesResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "The whole ordered list of an instance's ACL rules, replaced atomically (one config revision) on every change. " +
			"Deny wins; anything no rule allows is denied. Destroying it leaves the instance with no rules (everything denied).",
		Attributes: map[string]schema.Attribute{
			"id":          computedString("The instance ID."),
			"instance_id": instanceIDAttribute("The instance (aerie_instance.<name>.id)."),
			"rules": schema.ListNestedAttribute{
				Required:    true,
				Description: "The rules in evaluation order.",
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"effect": schema.StringAttribute{Required: true, Description: "allow or deny.",
						Validators: []validator.String{stringvalidator.OneOf("allow", "deny")}},
					"action": schema.StringAttribute{Required: true, Description: "publish, subscribe or all.",
						Validators: []validator.String{stringvalidator.OneOf("publish", "subscribe", "all")}},
					"filter": schema.StringAttribute{Required: true,
						Description: "An MQTT topic filter (+ and # wildcards); ${username} and ${clientid} stand for the device's own.",
						Validators:  []validator.String{stringvalidator.LengthBetween(1, 512), topicFilterValidator{}}},
					"credential_id": schema.StringAttribute{Optional: true,
						Description: "Only for this credential (aerie_credential.<name>.id); every device of the instance when absent."},
				}},
			},
		},
	}
}

func toRules(ms []aclRuleModel) []ACLRule {
	out := make([]ACLRule, 0, len(ms))
	for _, m := range ms {
		out = append(out, ACLRule{Effect: m.Effect.ValueString(), Action: m.Action.ValueString(),
			Filter: m.Filter.ValueString(), CredentialID: m.CredentialID.ValueString()})
	}
	return out
}

func fromRules(rs []ACLRule) []aclRuleModel {
	out := make([]aclRuleModel, 0, len(rs))
	for _, r := range rs {
		m := aclRuleModel{Effect: types.StringValue(r.Effect), Action: types.StringValue(r.Action),
			Filter: types.StringValue(r.Filter), CredentialID: types.StringNull()}
		if r.CredentialID != "" {
			m.CredentialID = types.StringValue(r.CredentialID)
		}
		out = append(out, m)
	}
	return out
}

// aclFieldPattern matches an API field error on one rule: rules[2].filter
// (or rules.2.filter).
var aclFieldPattern = regexp.MustCompile(`^rules(?:\[(\d+)\]|\.(\d+))\.(effect|action|filter|credential_id)$`)

// addACLError reports a refused rule list, pointing at rules[i].<field>.
func addACLError(diags *diag.Diagnostics, inst string, err error) {
	what := "set the ACL rules of " + inst
	var ie *InvalidError
	if !errors.As(err, &ie) || len(ie.Fields) == 0 {
		apiError(diags, what, err)
		return
	}
	for _, f := range ie.Fields {
		m := aclFieldPattern.FindStringSubmatch(f.Field)
		if m == nil {
			diags.AddError("Aerie API: "+what, f.Field+": "+f.Message)
			continue
		}
		i, _ := strconv.Atoi(m[1] + m[2])
		at := path.Root("rules").AtListIndex(i).AtName(m[3])
		diags.AddAttributeError(at, "Aerie API refused the rule", "Attribute "+at.String()+" "+f.Message)
	}
}

func (r *aclRulesResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan aclRulesModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	r.replace(ctx, &plan, &resp.Diagnostics, &resp.State)
}

// replace puts the planned rule list (create and update alike) and stores
// what the API answers.
func (r *aclRulesResource) replace(ctx context.Context, plan *aclRulesModel, diags *diag.Diagnostics, st *tfsdk.State) {
	inst := plan.InstanceID.ValueString()
	got, err := r.b.ReplaceACLRules(ctx, inst, toRules(plan.Rules))
	if err != nil {
		addACLError(diags, inst, err)
		return
	}
	plan.ID = types.StringValue(inst)
	plan.Rules = fromRules(got)
	diags.Append(st.Set(ctx, plan)...)
}

func (r *aclRulesResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var st aclRulesModel
	resp.Diagnostics.Append(req.State.Get(ctx, &st)...)
	if resp.Diagnostics.HasError() {
		return
	}
	inst := st.ID.ValueString()
	got, err := r.b.ACLRules(ctx, inst)
	if isNotFound(err) {
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		apiError(&resp.Diagnostics, "read the ACL rules of "+inst, err)
		return
	}
	st.InstanceID = types.StringValue(inst)
	st.Rules = fromRules(got)
	resp.Diagnostics.Append(resp.State.Set(ctx, &st)...)
}

func (r *aclRulesResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan aclRulesModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	r.replace(ctx, &plan, &resp.Diagnostics, &resp.State)
}

func (r *aclRulesResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var st aclRulesModel
	resp.Diagnostics.Append(req.State.Get(ctx, &st)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if _, err := r.b.ReplaceACLRules(ctx, st.ID.ValueString(), nil); err != nil && !isNotFound(err) {
		apiError(&resp.Diagnostics, "clear the ACL rules of "+st.ID.ValueString(), err)
	}
}

// ImportState takes the instance ID.
func (r *aclRulesResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	if !instanceIDPattern.MatchString(req.ID) {
		resp.Diagnostics.AddError("Invalid import ID", "import aerie_acl_rules by instance ID (i-…), got "+req.ID)
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), req.ID)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("instance_id"), req.ID)...)
}

// topicFilterValidator checks MQTT topic filter syntax (mqtttopic.CheckFilter)
// and refuses $-prefixed filters.
type topicFilterValidator struct{}

func (topicFilterValidator) Description(context.Context) string {
	return "must be a valid MQTT topic filter"
}

func (v topicFilterValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (topicFilterValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	f := req.ConfigValue.ValueString()
	bad := ""
	if err := mqtttopic.CheckFilter(f); err != nil {
		bad = "it " + err.Error()
		if errors.Is(err, mqtttopic.ErrHash) || errors.Is(err, mqtttopic.ErrPlus) {
			bad = err.Error()
		}
	} else if strings.HasPrefix(f, "$") && !strings.HasPrefix(f, "${") {
		// Stricter than the API, which allows an instance's own "$app/…".
		bad = "rules cannot cover $-prefixed (system) topics"
	}
	if bad != "" {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid MQTT topic filter",
			"Attribute "+req.Path.String()+" is not a valid MQTT topic filter ("+`"`+f+`"`+"): "+bad+".")
	}
}
