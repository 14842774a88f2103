//! Outbound HTTP grants: origins (`scheme://host[:port]`) a plugin may reach, checked on the
//! parsed URL, never on the text. IP addresses, loopback and private ranges are refused unless
//! an origin names the address itself, and names that resolve to such addresses are refused
//! too (no DNS rebinding into the private network).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Which ports an origin allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Exactly this one.
    Exact(u16),
    /// Any (`:*`).
    Any,
}

/// Which hosts an origin allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this name (lowercase).
    Name(String),
    /// Any subdomain of this name (`*.example.com`), not the name itself.
    Subdomains(String),
    /// Exactly this address.
    Ip(IpAddr),
}

/// One granted origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// The host.
    pub host: HostPattern,
    /// The port.
    pub port: Port,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://", self.scheme)?;
        match &self.host {
            HostPattern::Name(name) => write!(f, "{name}")?,
            HostPattern::Subdomains(name) => write!(f, "*.{name}")?,
            HostPattern::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            HostPattern::Ip(ip) => write!(f, "{ip}")?,
        }
        match self.port {
            Port::Exact(port) => write!(f, ":{port}"),
            Port::Any => write!(f, ":*"),
        }
    }
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

impl Origin {
    /// Parses `scheme://host[:port|:*]` (a trailing `/` is tolerated; a path is not).
    pub fn parse(text: &str) -> Result<Origin, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("`{text}` is not an origin like `https://api.example.com`"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "`{text}`: only http and https origins can be granted"
            ));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('#') || rest.contains('@') {
            return Err(format!(
                "`{text}`: an origin has no path, query or credentials"
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, "*")) => (host, Port::Any),
            Some((host, port)) if !host.ends_with(':') && !port.contains(']') => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("`{text}`: `{port}` is not a port"))?;
                (host, Port::Exact(port))
            }
            _ => (rest, Port::Exact(default_port(&scheme))),
        };
        let host = if let Some(name) = host.strip_prefix("*.") {
            HostPattern::Subdomains(valid_name(text, name)?)
        } else if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            HostPattern::Ip(IpAddr::V6(
                v6.parse()
                    .map_err(|_| format!("`{text}`: `{v6}` is not an IPv6 address"))?,
            ))
        } else if let Ok(ip) = host.parse::<Ipv4Addr>() {
            HostPattern::Ip(IpAddr::V4(ip))
        } else {
            HostPattern::Name(valid_name(text, host)?)
        };
        Ok(Origin { scheme, host, port })
    }

    /// Whether a request to `url` falls under this origin.
    pub fn matches(&self, url: &Url) -> bool {
        if url.scheme() != self.scheme {
            return false;
        }
        let port = url.port_or_known_default().unwrap_or(0);
        if let Port::Exact(allowed) = self.port
            && allowed != port
        {
            return false;
        }
        match (&self.host, url.host()) {
            (HostPattern::Name(name), Some(Host::Domain(host))) => host.eq_ignore_ascii_case(name),
            (HostPattern::Subdomains(name), Some(Host::Domain(host))) => {
                let host = host.to_ascii_lowercase();
                host.len() > name.len() + 1
                    && host.ends_with(name.as_str())
                    && host.as_bytes()[host.len() - name.len() - 1] == b'.'
            }
            (HostPattern::Ip(ip), Some(Host::Ipv4(v4))) => *ip == IpAddr::V4(v4),
            (HostPattern::Ip(ip), Some(Host::Ipv6(v6))) => *ip == IpAddr::V6(v6),
            _ => false,
        }
    }

    /// Whether everything `other` allows, this origin allows too.
    pub fn covers(&self, other: &Origin) -> bool {
        if self.scheme != other.scheme {
            return false;
        }
        let port = match (self.port, other.port) {
            (Port::Any, _) => true,
            (Port::Exact(a), Port::Exact(b)) => a == b,
            (Port::Exact(_), Port::Any) => false,
        };
        let host = match (&self.host, &other.host) {
            (a, b) if a == b => true,
            (HostPattern::Subdomains(parent), HostPattern::Name(name))
            | (HostPattern::Subdomains(parent), HostPattern::Subdomains(name)) => {
                name.ends_with(&format!(".{parent}"))
            }
            _ => false,
        };
        port && host
    }
}

fn valid_name(text: &str, name: &str) -> Result<String, String> {
    let name = name.to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(name)
    } else {
        Err(format!("`{text}`: `{name}` is not a host name"))
    }
}

/// Whether `ip` is a public unicast address (not loopback, private, link-local, shared,
/// documentation, multicast, reserved or unspecified).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            if let Some(v4) = embedded_v4(v6) {
                return is_public_v4(v4);
            }
            let first = v6.segments()[0];
            // Site-local (deprecated, still routed by some networks).
            if first & 0xffc0 == 0xfec0 {
                return false;
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || is_documentation_v6(v6))
        }
    }
}

/// The IPv4 address a translation prefix carries: NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`),
/// 6to4 (`2002::/16`) and IPv4-compatible (`::/96`) addresses reach IPv4 hosts.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let octets = ip.octets();
    let tail = Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
    if s[0] == 0x64 && s[1] == 0xff9b && (s[2..6] == [0, 0, 0, 0] || s[2] == 1) {
        return Some(tail);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5]));
    }
    if s[0..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return Some(tail);
    }
    None
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || (a == 192 && b == 0 && c == 0))
}

fn is_documentation_v6(ip: Ipv6Addr) -> bool {
    ip.segments()[0] == 0x2001 && ip.segments()[1] == 0x0db8
}

/// The outbound HTTP a plugin is granted.
#[derive(Debug, Clone, Default)]
pub struct HttpGrants {
    origins: Vec<Origin>,
    /// Addresses an origin names: the only non-public ones a request may reach.
    named_ips: BTreeSet<IpAddr>,
}

impl HttpGrants {
    /// Grants for `origins`.
    pub fn new(origins: Vec<Origin>) -> Self {
        let named_ips = origins
            .iter()
            .filter_map(|o| match o.host {
                HostPattern::Ip(ip) => Some(ip),
                _ => None,
            })
            .collect();
        HttpGrants { origins, named_ips }
    }

    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// Parses `url` and checks it against the grants: the reason it is refused, if it is.
    pub fn check(&self, url: &str) -> Result<Url, String> {
        let parsed = Url::parse(url).map_err(|err| format!("`{url}` is not a URL: {err}"))?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(format!("`{url}`: only http and https are allowed"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(format!("`{url}`: credentials in URLs are not allowed"));
        }
        if self.origins.is_empty() {
            return Err(format!("no outbound HTTP is granted (asked for `{url}`)"));
        }
        if let Some(ip) = host_ip(&parsed)
            && !self.named_ips.contains(&ip)
        {
            return Err(format!(
                "`{url}`: IP address {ip} is not granted (a grant must name an address to allow it)"
            ));
        }
        if !self.origins.iter().any(|origin| origin.matches(&parsed)) {
            return Err(format!(
                "`{}` is not among the granted origins ({})",
                origin_of(&parsed),
                self.origins
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(parsed)
    }

    /// Whether a host name may resolve to `ip`: only to public addresses. A grant that names a
    /// private address allows requests to that address itself, never names resolving to it.
    pub fn may_connect(&self, ip: IpAddr) -> bool {
        is_public(ip)
    }
}

/// The address in `url`'s host, if it is one.
fn host_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        Host::Domain(_) => None,
    }
}

/// `scheme://host:port` of `url`.
pub fn origin_of(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(origins: &[&str]) -> HttpGrants {
        HttpGrants::new(origins.iter().map(|o| Origin::parse(o).unwrap()).collect())
    }

    #[test]
    fn origins_match_scheme_host_and_port() {
        let g = grants(&[
            "https://api.example.com",
            "http://127.0.0.1:*",
            "https://*.corp.io:8443",
        ]);
        assert!(g.check("https://api.example.com/v1/x?y=1").is_ok());
        assert!(g.check("https://API.example.com:443/").is_ok());
        assert!(g.check("http://api.example.com/").is_err(), "scheme");
        assert!(g.check("https://api.example.com:444/").is_err(), "port");
        assert!(g.check("https://api.example.com.evil.net/").is_err());
        assert!(g.check("https://evil-api.example.com/").is_err());
        assert!(g.check("http://127.0.0.1:9/x").is_ok());
        assert!(g.check("https://a.corp.io:8443/").is_ok());
        assert!(
            g.check("https://corp.io:8443/").is_err(),
            "wildcard is subdomains only"
        );
        assert!(g.check("https://user:pw@api.example.com/").is_err());
        assert!(g.check("file:///etc/passwd").is_err());
    }

    #[test]
    fn addresses_need_a_grant_that_names_them() {
        let g = grants(&["https://api.example.com", "http://127.0.0.1:*"]);
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://[::1]/",
            "http://127.0.0.2/",
            "http://167772161/",
            "http://0x0a.1/",
        ] {
            assert!(g.check(url).is_err(), "{url}");
        }
        assert!(
            !g.may_connect("127.0.0.1".parse().unwrap()),
            "names never resolve to loopback"
        );
        for sneaky in [
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "::a9fe:a9fe",
            "fec0::1",
            "192.0.0.8",
        ] {
            assert!(!g.may_connect(sneaky.parse().unwrap()), "{sneaky}");
        }
        assert!(!g.may_connect("10.1.2.3".parse().unwrap()));
        assert!(!g.may_connect("::ffff:192.168.0.1".parse().unwrap()));
        assert!(!g.may_connect("fd00::1".parse().unwrap()));
        assert!(!g.may_connect("100.64.0.1".parse().unwrap()));
        assert!(g.may_connect("93.184.216.34".parse().unwrap()));
    }

    #[test]
    fn malformed_origins_are_refused() {
        for bad in [
            "api.example.com",
            "ftp://x.io",
            "https://x.io/path",
            "https://x.io:99999",
            "https://*.",
            "https://a b",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Origin::parse("https://*.example.com")
                .unwrap()
                .covers(&Origin::parse("https://api.example.com").unwrap())
        );
        assert!(
            !Origin::parse("https://api.example.com")
                .unwrap()
                .covers(&Origin::parse("https://other.example.com").unwrap())
        );
    }
}
