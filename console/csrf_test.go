package console

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestCSRF(t *testing.T) {
	c := NewCSRF([]byte(strings.Repeat("k", 32)), false)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	h := c.Middleware(ok)

	// A GET issues the cookie and a token.
	rec := httptest.NewRecorder()
	token := c.Token(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != csrfCookie || !cookies[0].HttpOnly {
		t.Fatalf("cookies = %+v", cookies)
	}
	post := func(form url.Values, withCookie bool, hdr map[string]string) int {
		req := httptest.NewRequest(http.MethodPost, "/instances", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if withCookie {
			req.AddCookie(cookies[0])
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	cases := []struct {
		name   string
		form   url.Values
		cookie bool
		hdr    map[string]string
		want   int
	}{
		{"valid token", url.Values{csrfField: {token}}, true, nil, http.StatusNoContent},
		{"no token", url.Values{"name": {"x"}}, true, nil, http.StatusForbidden},
		{"no cookie", url.Values{csrfField: {token}}, false, nil, http.StatusForbidden},
		{"forged token", url.Values{csrfField: {"AAAA" + token[4:]}}, true, nil, http.StatusForbidden},
		{"cross-site request", url.Values{csrfField: {token}}, true, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"token in header", url.Values{}, true, map[string]string{csrfHeader: token}, http.StatusNoContent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := post(tc.form, tc.cookie, tc.hdr); got != tc.want {
				t.Fatalf("status %d, want %d", got, tc.want)
			}
		})
	}
}
