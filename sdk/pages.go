package sdk

import (
	"context"
	"iter"
	"net/http"
	"reflect"
)

// httpResponse returns the HTTPResponse field of a generated response.
func httpResponse(resp any) *http.Response {
	v := reflect.ValueOf(resp)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return nil
	}
	f := v.Elem().FieldByName("HTTPResponse")
	if !f.IsValid() {
		return nil
	}
	h, _ := f.Interface().(*http.Response)
	return h
}

// bodyOf returns the Body field of a generated response.
func bodyOf(resp any) []byte {
	v := reflect.ValueOf(resp)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return nil
	}
	f := v.Elem().FieldByName("Body")
	if !f.IsValid() {
		return nil
	}
	b, _ := f.Interface().([]byte)
	return b
}

// PageFunc fetches the page after cursor ("" for the first) and returns its
// items and the next cursor ("" on the last page).
type PageFunc[T any] func(ctx context.Context, cursor string) ([]T, string, error)

// All iterates over every item of a cursor-paginated list, fetching pages
// as needed; an error ends the iteration (yielded with a zero item).
//
//	for inst, err := range sdk.All(ctx, c.InstancesPages(org)) { … }
func All[T any](ctx context.Context, fetch PageFunc[T]) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		cursor := ""
		for {
			items, next, err := fetch(ctx, cursor)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
			if next == "" {
				return
			}
			cursor = next
		}
	}
}

// Collect gathers every item of a list.
func Collect[T any](ctx context.Context, fetch PageFunc[T]) ([]T, error) {
	var out []T
	for it, err := range All(ctx, fetch) {
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, nil
}

func cursorParam(c string) *Cursor {
	if c == "" {
		return nil
	}
	return &c
}

func nextOf(n *NextCursor) string {
	if n == nil {
		return ""
	}
	return *n
}

var pageLimit Limit = 200

// InstancesPages pages through the org's instances.
func (c *API) InstancesPages(orgID string) PageFunc[Instance] {
	return func(ctx context.Context, cursor string) ([]Instance, string, error) {
		r, err := c.ListInstancesWithResponse(ctx, orgID, &ListInstancesParams{Limit: &pageLimit, Cursor: cursorParam(cursor)})
		if err := Check(r, err); err != nil {
			return nil, "", err
		}
		return r.JSON200.Data, nextOf(r.JSON200.NextCursor), nil
	}
}

// CredentialsPages pages through an instance's credentials.
func (c *API) CredentialsPages(orgID, instanceID string) PageFunc[Credential] {
	return func(ctx context.Context, cursor string) ([]Credential, string, error) {
		r, err := c.ListCredentialsWithResponse(ctx, orgID, instanceID, &ListCredentialsParams{Limit: &pageLimit, Cursor: cursorParam(cursor)})
		if err := Check(r, err); err != nil {
			return nil, "", err
		}
		return r.JSON200.Data, nextOf(r.JSON200.NextCursor), nil
	}
}

// ACLRulesPages pages through an instance's ACL rules (in position order).
func (c *API) ACLRulesPages(orgID, instanceID string) PageFunc[ACLRule] {
	return func(ctx context.Context, cursor string) ([]ACLRule, string, error) {
		r, err := c.ListACLRulesWithResponse(ctx, orgID, instanceID, &ListACLRulesParams{Limit: &pageLimit, Cursor: cursorParam(cursor)})
		if err := Check(r, err); err != nil {
			return nil, "", err
		}
		return r.JSON200.Data, nextOf(r.JSON200.NextCursor), nil
	}
}

// APIKeysPages pages through the org's API keys.
func (c *API) APIKeysPages(orgID string) PageFunc[APIKey] {
	return func(ctx context.Context, cursor string) ([]APIKey, string, error) {
		r, err := c.ListAPIKeysWithResponse(ctx, orgID, &ListAPIKeysParams{Limit: &pageLimit, Cursor: cursorParam(cursor)})
		if err := Check(r, err); err != nil {
			return nil, "", err
		}
		return r.JSON200.Data, nextOf(r.JSON200.NextCursor), nil
	}
}

// MembersPages pages through the org's members.
func (c *API) MembersPages(orgID string) PageFunc[Member] {
	return func(ctx context.Context, cursor string) ([]Member, string, error) {
		r, err := c.ListMembersWithResponse(ctx, orgID, &ListMembersParams{Limit: &pageLimit, Cursor: cursorParam(cursor)})
		if err := Check(r, err); err != nil {
			return nil, "", err
		}
		return r.JSON200.Data, nextOf(r.JSON200.NextCursor), nil
	}
}

// Body returns the raw body of a generated response (nil when none).
func Body(resp interface{ StatusCode() int }) []byte { return bodyOf(resp) }
