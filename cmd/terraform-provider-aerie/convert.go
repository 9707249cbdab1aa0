package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// endpointTypes is the object type of an instance's endpoints.
var endpointTypes = map[string]attr.Type{
	"mqtt": types.StringType, "mqtts": types.StringType, "ws": types.StringType, "wss": types.StringType,
}

func endpointsValue(e map[string]*string) types.Object {
	vals := map[string]attr.Value{}
	for k := range endpointTypes {
		vals[k] = types.StringPointerValue(e[k])
	}
	return types.ObjectValueMust(endpointTypes, vals)
}

// quotaTypes is the object type of a full set of quotas.
func quotaTypes() map[string]attr.Type {
	m := map[string]attr.Type{}
	for _, n := range quotaNames {
		m[n] = types.Int64Type
	}
	return m
}

func quotasValue(q map[string]int64) types.Object {
	vals := map[string]attr.Value{}
	for _, n := range quotaNames {
		vals[n] = types.Int64Value(q[n])
	}
	return types.ObjectValueMust(quotaTypes(), vals)
}

// timeValue renders t as RFC 3339 (null for nil).
func timeValue(t *time.Time) types.String {
	if t == nil {
		return types.StringNull()
	}
	return types.StringValue(t.UTC().Format(time.RFC3339))
}

// parseTime reads an RFC 3339 attribute; nil for null, and an attribute
// error naming at when it does not parse.
func parseTime(v types.String, at path.Path, diags *diag.Diagnostics) *time.Time {
	if v.IsNull() || v.IsUnknown() {
		return nil
	}
	t, err := time.Parse(time.RFC3339, v.ValueString())
	if err != nil {
		diags.AddAttributeError(at, "Invalid timestamp", fmt.Sprintf("%s must be an RFC 3339 time such as 2030-01-02T15:04:05Z: %v", at, err))
		return nil
	}
	return &t
}

// sameTime reports whether the RFC 3339 strings a and b name the same instant,
// so a config "…+02:00" and the server's UTC form do not plan a change.
func sameTime(a, b string) bool {
	ta, err1 := time.Parse(time.RFC3339, a)
	tb, err2 := time.Parse(time.RFC3339, b)
	return err1 == nil && err2 == nil && ta.Equal(tb)
}

// apiError adds err as an error diagnostic for what.
func apiError(diags *diag.Diagnostics, what string, err error) {
	diags.AddError("Aerie API: "+what, err.Error())
}

func isNotFound(err error) bool { return errors.Is(err, errNotFound) }

// validatorString is a string attribute validator.
type validatorString = validator.String

// addAPIError adds err for what; the API's field errors become attribute
// errors on the attributes fields maps them to (prefix the path they are under).
func addAPIError(diags *diag.Diagnostics, what string, err error, fields map[string]string) {
	addAPIErrorAt(diags, what, err, fields, path.Empty())
}

func addAPIErrorAt(diags *diag.Diagnostics, what string, err error, fields map[string]string, under path.Path) {
	var ie *InvalidError
	if !errors.As(err, &ie) || len(ie.Fields) == 0 {
		apiError(diags, what, err)
		return
	}
	for _, f := range ie.Fields {
		at, ok := fields[f.Field]
		if !ok {
			diags.AddError("Aerie API: "+what, f.Field+": "+f.Message)
			continue
		}
		diags.AddAttributeError(under.AtName(at), "Aerie API refused "+at, "Attribute "+at+" "+f.Message)
	}
}
