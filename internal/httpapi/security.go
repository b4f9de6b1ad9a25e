package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// MinTokenLength is the shortest API or admin token accepted, in bytes.
const MinTokenLength = 16

// Content-Security-Policy values. The dashboard loads only its own files and
// talks only to its own origin; API responses load nothing at all.
const (
	dashboardCSP = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
		"img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
	apiCSP = "default-src 'none'; frame-ancestors 'none'"
)

// Security holds the access rules of the server. The zero value leaves the
// API and the admin endpoints without authentication, which app.Serve allows
// only on a loopback address.
type Security struct {
	// APITokens are the bearer tokens accepted on /v1/*. Empty leaves the
	// API unauthenticated.
	APITokens []string

	// AdminToken is the bearer token of /debug/* and /metrics. When it is
	// empty, those routes are open while APITokens is empty too, and closed
	// (403) otherwise.
	AdminToken string

	// PublicMetrics serves /metrics without a token.
	PublicMetrics bool

	// Pprof serves /debug/pprof/ to the admin token. It requires AdminToken.
	Pprof bool

	// CORSOrigins are the origins, such as https://ops.example.com, whose
	// browser pages may call /v1/*. Empty sends no CORS headers, so browsers
	// allow only the dashboard's own origin.
	CORSOrigins []string

	// WebhookAllowCIDRs, when not empty, are the only networks whose
	// webhooks are accepted; webhooks from elsewhere get 403 before their
	// signature is checked.
	WebhookAllowCIDRs []netip.Prefix

	// TrustedProxies are the networks of reverse proxies whose
	// X-Forwarded-For header is believed when the allowlist picks the
	// client address.
	TrustedProxies []netip.Prefix

	// LogPhoneNumbers writes phone numbers to logs in full. By default they
	// are masked with MaskPhone.
	LogPhoneNumbers bool
}

// validate checks the tokens and normalizes the origins. Its errors name a
// token by its position, never by its value.
func (sec *Security) validate() error {
	for i, tok := range sec.APITokens {
		if err := checkToken(tok); err != nil {
			return fmt.Errorf("invalid API token %d of %d: %w", i+1, len(sec.APITokens), err)
		}
	}
	if sec.AdminToken != "" {
		if err := checkToken(sec.AdminToken); err != nil {
			return fmt.Errorf("invalid admin token: %w", err)
		}
		for _, tok := range sec.APITokens {
			if tok == sec.AdminToken {
				return errors.New("invalid admin token: it equals an API token; use a separate token for the admin endpoints")
			}
		}
	}
	if sec.Pprof && sec.AdminToken == "" {
		return errors.New("pprof needs an admin token: set --admin-token or --admin-token-file, or leave --pprof off")
	}
	// A new slice, so that the caller's configuration stays as it was.
	origins := make([]string, len(sec.CORSOrigins))
	for i, origin := range sec.CORSOrigins {
		normal, err := normalizeOrigin(origin)
		if err != nil {
			return err
		}
		origins[i] = normal
	}
	sec.CORSOrigins = origins
	return nil
}

// checkToken rejects tokens that are short or could not travel in an
// Authorization header unchanged.
func checkToken(tok string) error {
	if len(tok) < MinTokenLength {
		return fmt.Errorf("shorter than %d characters; generate one with: openssl rand -hex 32", MinTokenLength)
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] <= ' ' || tok[i] > '~' {
			return errors.New("contains a space, a control character or a non-ASCII character")
		}
	}
	return nil
}

// normalizeOrigin returns origin as browsers send it in the Origin header:
// lower-case scheme and host, no path.
func normalizeOrigin(origin string) (string, error) {
	if origin == "*" {
		return "", errors.New(`invalid CORS origin "*": list each allowed origin, such as https://ops.example.com`)
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("invalid CORS origin %q: use scheme://host[:port], such as https://ops.example.com", origin)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// tokenSet holds the SHA-256 digests of the accepted tokens. Comparing
// digests of fixed length in constant time hides both the content and the
// length of the configured tokens.
type tokenSet struct {
	digests [][sha256.Size]byte
}

func newTokenSet(tokens []string) tokenSet {
	ts := tokenSet{digests: make([][sha256.Size]byte, len(tokens))}
	for i, tok := range tokens {
		ts.digests[i] = sha256.Sum256([]byte(tok))
	}
	return ts
}

// empty reports whether no token is configured.
func (ts tokenSet) empty() bool {
	return len(ts.digests) == 0
}

// match reports whether presented is one of the tokens. It compares against
// every token, so the time taken does not tell which one matched.
func (ts tokenSet) match(presented string) bool {
	if presented == "" {
		return false
	}
	d := sha256.Sum256([]byte(presented))
	found := 0
	for i := range ts.digests {
		found |= subtle.ConstantTimeCompare(d[:], ts.digests[i][:])
	}
	return found == 1
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header, or "" when there is none. The scheme is case-insensitive.
func bearerToken(r *http.Request) string {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// requireAPI passes requests that carry an API token, and every request when
// no API token is configured. Others get 401 with a Bearer challenge.
func (s *server) requireAPI(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.apiTokens.empty() || s.apiTokens.match(bearerToken(r)) {
			next.ServeHTTP(w, r)
			return
		}
		s.challenge(w, r, "callcat", "missing or invalid API token: send Authorization: Bearer <token>")
	})
}

// requireStream passes requests that requireAPI passes, and requests whose
// ticket query parameter is a valid stream ticket for the path scope returns.
// Browsers need the ticket because EventSource cannot send headers.
func (s *server) requireStream(scope func(*http.Request) string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.apiTokens.empty() || s.apiTokens.match(bearerToken(r)) {
			next.ServeHTTP(w, r)
			return
		}
		if ticket := r.URL.Query().Get("ticket"); ticket != "" {
			if err := s.tickets.verify(ticket, scope(r)); err != nil {
				s.challenge(w, r, "callcat", "invalid stream ticket: "+err.Error()+"; request a new one from POST /v1/stream-tickets")
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		s.challenge(w, r, "callcat", "missing or invalid API token: send Authorization: Bearer <token> or ?ticket= from POST /v1/stream-tickets")
	})
}

// requireAdmin guards the admin endpoints. With an admin token configured it
// passes only that token. Without one, the endpoints stay open while the API
// is unauthenticated too (loopback only), and are closed otherwise.
func (s *server) requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !s.adminTokens.empty():
			if s.adminTokens.match(bearerToken(r)) {
				next.ServeHTTP(w, r)
				return
			}
			s.challenge(w, r, "callcat-admin", "missing or invalid admin token: send Authorization: Bearer <admin token>")
		case s.apiTokens.empty():
			next.ServeHTTP(w, r)
		default:
			s.writeError(w, http.StatusForbidden, "admin endpoints are disabled: start callcat with --admin-token or --admin-token-file")
		}
	})
}

// challenge writes a 401 response with the RFC 6750 challenge. The message
// never repeats what the client sent.
func (s *server) challenge(w http.ResponseWriter, r *http.Request, realm, msg string) {
	value := `Bearer realm="` + realm + `"`
	if r.Header.Get("Authorization") != "" || r.URL.Query().Has("ticket") {
		value += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", value)
	s.writeError(w, http.StatusUnauthorized, msg)
}

// logAccessRules logs once at start how each group of routes is protected.
func (s *server) logAccessRules() {
	sec := &s.cfg.Security
	admin := "admin_token"
	switch {
	case s.adminTokens.empty() && s.apiTokens.empty():
		admin = "none"
	case s.adminTokens.empty():
		admin = "disabled"
	}
	if s.apiTokens.empty() {
		s.logger.Warn("API is unauthenticated: no API tokens are configured, so callcat serves only on a loopback address")
	}
	s.logger.Info("access rules",
		"api_tokens", len(sec.APITokens),
		"admin_endpoints", admin,
		"public_metrics", sec.PublicMetrics,
		"pprof", sec.Pprof,
		"cors_origins", len(sec.CORSOrigins),
		"webhook_allow_cidrs", len(sec.WebhookAllowCIDRs),
		"trusted_proxies", len(sec.TrustedProxies),
		"dashboard", s.assets != nil)
}

// securityHeaders sets the headers every response carries. The dashboard
// handlers replace the Content-Security-Policy with their own.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", apiCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// cors lets pages from the listed origins call /v1/*. It responds to their
// preflight requests and names the origin in Access-Control-Allow-Origin.
// Tokens travel in the Authorization header, not in cookies, so
// Access-Control-Allow-Credentials is never sent, and neither is "*".
// Requests from other origins get no CORS headers, which makes browsers
// withhold the response from the page.
func cors(origins []string, next http.Handler) http.Handler {
	if len(origins) == 0 {
		return next
	}
	allowed := make(map[string]bool, len(origins))
	for _, o := range origins {
		allowed[o] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/") {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		if origin == "" || !allowed[origin] {
			next.ServeHTTP(w, r)
			return
		}

		h.Set("Access-Control-Allow-Origin", origin)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			h.Set("Access-Control-Allow-Methods", "GET, POST")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// clientAddr returns the address of the client behind r. It is the direct
// peer, unless the peer is a trusted proxy. Then it is the right-most
// X-Forwarded-For address that is not a trusted proxy, because the client
// itself may have written any address left of it. The returned address is
// invalid when an entry cannot be parsed.
func (s *server) clientAddr(r *http.Request) netip.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	addr := peer.Addr().Unmap()
	trusted := s.cfg.Security.TrustedProxies
	if !prefixesContain(trusted, addr) {
		return addr
	}

	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := parseHop(strings.TrimSpace(hops[i]))
		if err != nil {
			return netip.Addr{}
		}
		addr = hop
		if !prefixesContain(trusted, hop) {
			return hop
		}
	}
	// Every hop is a trusted proxy; the left-most one sent the request.
	return addr
}

// parseHop parses one X-Forwarded-For entry: an address, with or without a
// port.
func parseHop(hop string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(hop); err == nil {
		return a.Unmap(), nil
	}
	ap, err := netip.ParseAddrPort(hop)
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr().Unmap(), nil
}

func prefixesContain(prefixes []netip.Prefix, addr netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// allowWebhookSource rejects with 403 the webhooks whose client address is
// outside Security.WebhookAllowCIDRs. Without an allowlist it passes
// everything.
func (s *server) allowWebhookSource(next http.Handler) http.Handler {
	allow := s.cfg.Security.WebhookAllowCIDRs
	if len(allow) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr := s.clientAddr(r)
		if addr.IsValid() && prefixesContain(allow, addr) {
			next.ServeHTTP(w, r)
			return
		}
		s.metrics.webhooks.WithLabelValues("unknown", "forbidden_source").Inc()
		s.limited.Log(r.Context(), slog.LevelWarn, "webhook_source", "webhook rejected: source address not in the allowlist",
			"client_addr", addrString(addr))
		s.writeError(w, http.StatusForbidden, "webhook source address not allowed")
	})
}

// addrString formats addr for logs; an invalid address becomes "unknown".
func addrString(addr netip.Addr) string {
	if !addr.IsValid() {
		return "unknown"
	}
	return addr.String()
}
