package webhook

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// clientAddr is the address of the client that sent r, for the log: the
// TCP peer, unless the peer is one of the trusted proxies
// (Config.TrustedProxies), in which case X-Forwarded-For is read from the
// right, past every trusted proxy, to the first address that is not one.
// Entries a client wrote itself sit left of that and are never believed.
func (s *Server) clientAddr(r *http.Request) string {
	peer := remoteHost(r.RemoteAddr)
	if len(s.cfg.TrustedProxies) == 0 {
		return peer
	}
	ip, err := netip.ParseAddr(peer)
	if err != nil || !s.trusted(ip) {
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
		if !s.trusted(hop) {
			break
		}
	}
	return client
}

// trusted reports whether ip is in one of the trusted proxies' networks.
func (s *Server) trusted(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range s.cfg.TrustedProxies {
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
