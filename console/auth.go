package console

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"

	"github.com/aeriemq/aerie/tenancy"
)

func (c *Console) signupForm(w http.ResponseWriter, r *http.Request) {
	if userFrom(r.Context()) != nil {
		seeOther(w, r, "/")
		return
	}
	f := Form{Values: map[string]string{"next": r.URL.Query().Get("next")}}
	c.render(w, r, http.StatusOK, SignupPage(c.page(w, r, "Sign up", "signup"), f))
}

func (c *Console) signup(w http.ResponseWriter, r *http.Request) {
	f := formOf(r, "email", "password", "org_name", "next")
	if ok, wait := c.signups.Allow(clientAddr(r), c.now()); !ok {
		f.Errors = map[string]string{"email": fmt.Sprintf("Too many sign-ups from your address. Try again in %d minutes.", int(math.Ceil(wait.Minutes())))}
		w.Header().Set("Retry-After", fmt.Sprint(int(math.Ceil(wait.Seconds()))))
		c.render(w, r, http.StatusTooManyRequests, SignupPage(c.page(w, r, "Sign up", "signup"), f))
		return
	}
	u, o, err := c.svc.Signup(r.Context(), tenancy.SignupInput{Email: f.Get("email"), Password: r.PostFormValue("password"),
		OrgName: f.Get("org_name")}, actor(r))
	if err != nil {
		switch {
		case f.fieldErrors(err, nil):
		case errors.Is(err, tenancy.ErrConflict):
			f.Errors["email"] = "is already registered; log in instead"
		default:
			c.fail(w, r, err)
			return
		}
		c.render(w, r, http.StatusUnprocessableEntity, SignupPage(c.page(w, r, "Sign up", "signup"), f))
		return
	}
	s, err := c.svc.StartSession(r.Context(), u.ID)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.setSession(w, s)
	setFlash(w, "Welcome to Aerie. We sent a link to "+u.Email+" to verify your address.", c.secure)
	if next := f.Get("next"); next != "" {
		seeOther(w, r, safeNext(next)) // e.g. back to the invitation being accepted
		return
	}
	seeOther(w, r, "/orgs/"+o.ID+"/")
}

func (c *Console) loginForm(w http.ResponseWriter, r *http.Request) {
	if userFrom(r.Context()) != nil {
		seeOther(w, r, safeNext(r.URL.Query().Get("next")))
		return
	}
	f := Form{Values: map[string]string{"next": r.URL.Query().Get("next")}}
	c.render(w, r, http.StatusOK, LoginPage(c.page(w, r, "Log in", "login"), f))
}

// login applies the API's throttles (per client address and per email)
// before asking the tenancy service to check the password.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	f := formOf(r, "email", "next")
	f.Errors = map[string]string{}
	now := c.now()
	ok, wait := c.loginAddr.Allow(clientAddr(r), now)
	if ok {
		ok, wait = c.loginMail.Allow(strings.ToLower(f.Get("email")), now)
	}
	if !ok {
		f.Errors["email"] = fmt.Sprintf("Too many attempts. Try again in %d seconds.", int(math.Ceil(wait.Seconds())))
		w.Header().Set("Retry-After", fmt.Sprint(int(math.Ceil(wait.Seconds()))))
		c.render(w, r, http.StatusTooManyRequests, LoginPage(c.page(w, r, "Log in", "login"), f))
		return
	}
	s, err := c.svc.Login(r.Context(), f.Get("email"), r.PostFormValue("password"))
	if errors.Is(err, tenancy.ErrUnauthenticated) {
		f.Errors["password"] = "Email or password is wrong."
		c.render(w, r, http.StatusUnauthorized, LoginPage(c.page(w, r, "Log in", "login"), f))
		return
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.setSession(w, s)
	seeOther(w, r, safeNext(f.Get("next")))
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(refreshCookie); err == nil && ck.Value != "" {
		if err := c.svc.Logout(r.Context(), ck.Value); err != nil {
			c.fail(w, r, err)
			return
		}
	}
	c.clearSession(w)
	setFlash(w, "You are logged out.", c.secure)
	seeOther(w, r, "/login")
}

// verifyForm shows a button that confirms the emailed token: following a
// link (or a mail scanner prefetching it) changes nothing by itself.
func (c *Console) verifyForm(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, VerifyPage(c.page(w, r, "Verify your email", ""), r.URL.Query().Get("token"), false))
}

func (c *Console) verifyEmail(w http.ResponseWriter, r *http.Request) {
	tok := r.PostFormValue("token")
	p := c.page(w, r, "Verify your email", "")
	if err := c.svc.VerifyEmail(r.Context(), tok); err != nil {
		if !errors.Is(err, tenancy.ErrUnauthenticated) {
			c.fail(w, r, err)
			return
		}
		p.Error = "This link is invalid, already used or expired."
		c.render(w, r, http.StatusBadRequest, VerifyPage(p, tok, false))
		return
	}
	c.render(w, r, http.StatusOK, VerifyPage(p, "", true))
}

// resetForm asks for the email (no token) or a new password (token).
func (c *Console) resetForm(w http.ResponseWriter, r *http.Request) {
	f := Form{Values: map[string]string{"token": r.URL.Query().Get("token")}}
	c.render(w, r, http.StatusOK, ResetPage(c.page(w, r, "Reset your password", ""), f, false))
}

func (c *Console) requestReset(w http.ResponseWriter, r *http.Request) {
	f := formOf(r, "email")
	if ok, wait := c.loginMail.Allow("reset:"+strings.ToLower(f.Get("email")), c.now()); !ok {
		f.Errors["email"] = fmt.Sprintf("Too many requests. Try again in %d seconds.", int(math.Ceil(wait.Seconds())))
		c.render(w, r, http.StatusTooManyRequests, ResetPage(c.page(w, r, "Reset your password", ""), f, false))
		return
	}
	if err := c.svc.RequestPasswordReset(r.Context(), f.Get("email")); err != nil {
		if !f.fieldErrors(err, nil) {
			c.fail(w, r, err)
			return
		}
		c.render(w, r, http.StatusUnprocessableEntity, ResetPage(c.page(w, r, "Reset your password", ""), f, false))
		return
	}
	c.render(w, r, http.StatusOK, ResetPage(c.page(w, r, "Reset your password", ""), f, true))
}

func (c *Console) confirmReset(w http.ResponseWriter, r *http.Request) {
	f := formOf(r, "token")
	err := c.svc.ResetPassword(r.Context(), f.Get("token"), r.PostFormValue("password"))
	if err != nil {
		switch {
		case f.fieldErrors(err, nil):
		case errors.Is(err, tenancy.ErrUnauthenticated):
			f.Errors["password"] = "This reset link is invalid, already used or expired. Ask for a new one."
		default:
			c.fail(w, r, err)
			return
		}
		c.render(w, r, http.StatusUnprocessableEntity, ResetPage(c.page(w, r, "Reset your password", ""), f, false))
		return
	}
	c.clearSession(w)
	setFlash(w, "Your password is changed and every session signed out. Log in with the new password.", c.secure)
	seeOther(w, r, "/login")
}

func (c *Console) acceptForm(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, AcceptPage(c.page(w, r, "Join an organisation", ""), r.URL.Query().Get("token")))
}

func (c *Console) acceptInvitation(w http.ResponseWriter, r *http.Request) {
	tok := r.PostFormValue("token")
	o, err := c.svc.AcceptInvitation(r.Context(), actor(r), tok)
	if errors.Is(err, tenancy.ErrNotFound) {
		p := c.page(w, r, "Join an organisation", "")
		p.Error = "This invitation is invalid, already used, expired, or was sent to another email address."
		c.render(w, r, http.StatusNotFound, AcceptPage(p, tok))
		return
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	setFlash(w, "You joined "+o.Name+" as "+string(o.Role)+".", c.secure)
	seeOther(w, r, "/orgs/"+o.ID+"/")
}
