package console

import (
	"net/http"
)

func statusText(code int) string { return http.StatusText(code) }

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request, _ session) {
	s.render(w, r, http.StatusOK, loginPage(safeNext(r.URL.Query().Get("next")), "", s.oidc != nil, len(s.cfg.Users.Users) > 0))
}

// login checks the local user's password. The login form carries no CSRF
// token (there is no session yet); CrossOriginProtection refuses it from
// another site, and a new session (with a new token) is issued on success.
func (s *Server) login(w http.ResponseWriter, r *http.Request, _ session) {
	next := safeNext(r.PostFormValue("next"))
	u, err := s.cfg.Users.check(r.PostFormValue("user"), r.PostFormValue("password"))
	if err != nil {
		// The name typed is not logged: people type passwords there.
		s.cfg.Log.Warn("console sign-in refused")
		s.render(w, r, http.StatusUnauthorized, loginPage(next, "Unknown user or wrong password.", s.oidc != nil, len(s.cfg.Users.Users) > 0))
		return
	}
	s.sessions.issue(w, u.Name, u.Role)
	s.cfg.Log.Info("console sign-in", "user", u.Name, "role", u.Role)
	if _, ok := partnerOf(u.Role); ok && next == "/console/" {
		next = "/console/portal"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, _ session) {
	s.sessions.clear(w)
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}

// home sends each user to their start page.
func (s *Server) home(w http.ResponseWriter, r *http.Request, ss session) {
	if _, ok := partnerOf(ss.Role); ok {
		http.Redirect(w, r, "/console/portal", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/console/overview", http.StatusSeeOther)
}
