package main

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
)

// The schema pieces every resource uses.

// keepState keeps a computed string known across plans: it is unknown only
// while the resource is to be created.
func keepState() []planmodifier.String {
	return []planmodifier.String{stringplanmodifier.UseStateForUnknown()}
}

// replaceOnChange makes a change of the attribute replace the resource.
func replaceOnChange() []planmodifier.String {
	return []planmodifier.String{stringplanmodifier.RequiresReplace()}
}

// computedString is a string the API sets at creation and that does not
// change afterwards (IDs, timestamps, derived names).
func computedString(description string) schema.StringAttribute {
	return schema.StringAttribute{Computed: true, Description: description, PlanModifiers: keepState()}
}

// instanceIDAttribute is the instance_id of a resource that belongs to an
// instance: required, an instance ID, and replacing the resource when it
// changes.
func instanceIDAttribute(description string) schema.StringAttribute {
	return schema.StringAttribute{Required: true, Description: description,
		PlanModifiers: replaceOnChange(), Validators: instanceIDValidators()}
}

func instanceIDValidators() []validator.String {
	return []validator.String{stringvalidator.RegexMatches(instanceIDPattern, "must be an instance ID such as i-0123456789 (use aerie_instance.<name>.id)")}
}

// configured gives a resource its Backend from the provider (embed it).
type configured struct{ b Backend }

// Configure takes the provider's Backend.
func (c *configured) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	c.b = backendFrom(req.ProviderData, &resp.Diagnostics)
}
