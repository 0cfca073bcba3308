package webhook

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// clientAddr is the address of the client that sent r (see ClientAddr).
func (s *Server) clientAddr(r *http.Request) string {
	return ClientAddr(r, s.cfg.TrustedProxies)
}

// ClientAddr is the address of the client that sent r, for logs and rate
// limits: the TCP peer, unless the peer is one of the trusted proxies, in
// which case X-Forwarded-For is read from the right, past every trusted
// proxy, to the first address that is not one. Entries a client wrote
// itself sit left of that and are never believed.
func ClientAddr(r *http.Request, trusted []netip.Prefix) string {
	peer := remoteHost(r.RemoteAddr)
	if !FromTrustedProxy(r, trusted) {
		return peer
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // garbage: believe nothing further left
		}
		client = hop.Unmap().String()
		if !inPrefixes(hop, trusted) {
			break
		}
	}
	return client
}

// FromTrustedProxy reports whether r's TCP peer is one of the trusted
// proxies, whose headers (X-Forwarded-For, a signed-in user's name) may be
// believed.
func FromTrustedProxy(r *http.Request, trusted []netip.Prefix) bool {
	ip, err := netip.ParseAddr(remoteHost(r.RemoteAddr))
	return err == nil && inPrefixes(ip, trusted)
}

// inPrefixes reports whether ip is in one of the networks.
func inPrefixes(ip netip.Addr, nets []netip.Prefix) bool {
	ip = ip.Unmap()
	for _, p := range nets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// remoteHost is the host part of a TCP address (without brackets for
// IPv6), or the address itself when it has no port.
func remoteHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}
