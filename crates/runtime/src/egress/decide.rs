//! The egress decision: given a policy, where a connection goes and how its address was found,
//! allow it or not, naming the rule that decided. Pure, so the proxy's behaviour is tested here
//! without sockets.
//!
//! Some addresses are protected whatever the name-based rules say, because reaching them from a
//! sandbox is how server-side request forgery escalates: the cloud metadata service hands out the
//! host's credentials, and the server's own API would let a sandbox drive its operator's account.
//! Only a CIDR rule inside the protected range opens such an address (`169.254.169.254` or
//! `127.0.0.0/8`, never `0.0.0.0/0`), so opening one is always explicit about the address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::policy::{normalize_domain, quoted, Action, Cidr, Mode, NetworkPolicy, Rule, Target};

/// The host a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A name, lowercase and without the trailing dot, as [`parse_authority`] returns it.
    Name(String),
    /// An address literal.
    Ip(IpAddr),
}

/// Parses the authority of a CONNECT request or a Host header: "example.com",
/// "Example.COM.:8080", "10.0.0.1:443", "[2001:db8::1]:443", "[::1]". The port is
/// `default_port` when none is given. Userinfo, spaces, non-ASCII and numeric names that
/// resolvers read as addresses ("127.1", "0x7f.1", "2130706433") are refused, so that the name
/// the policy checks is the name that gets resolved.
pub fn parse_authority(authority: &str, default_port: u16) -> Result<(Host, u16), String> {
    split_authority(authority, default_port).map_err(|reason| format!("{}: {reason}", quoted(authority)))
}

fn split_authority(authority: &str, default_port: u16) -> Result<(Host, u16), String> {
    if !authority.is_ascii() {
        return Err("is not ASCII; write an internationalized name in its xn-- form".to_owned());
    }
    if authority.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err("has a space or a control character".to_owned());
    }
    if authority.contains('@') {
        return Err("has userinfo (user@host); credentials do not go in the authority".to_owned());
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or("has '[' without ']'")?;
        let ip =
            inner.parse::<Ipv6Addr>().map_err(|_| format!("{} is not an IPv6 address", quoted(inner)))?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("expected ':' and a port after ']'")?),
        };
        return Ok((Host::Ip(IpAddr::V6(ip)), parse_port(port, default_port)?));
    }
    let (host, port) = match authority.split_once(':') {
        Some((_, port)) if port.contains(':') => {
            return Err("an IPv6 address needs brackets, as in [2001:db8::1]:443".to_owned());
        }
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err("names no host".to_owned());
    }
    let port = parse_port(port, default_port)?;
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok((Host::Ip(IpAddr::V4(ip)), port));
    }
    Ok((Host::Name(normalize_domain(host)?), port))
}

fn parse_port(text: Option<&str>, default_port: u16) -> Result<u16, String> {
    let Some(text) = text else { return Ok(default_port) };
    // u16's parser takes a leading '+'; a port is digits only.
    match text.parse::<u16>() {
        Ok(port) if port != 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(format!("the port {} is not a number from 1 to 65535", quoted(text))),
    }
}

/// How the proxy got the address it would connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client named an IP literal.
    Literal,
    /// A name resolved through DNS, which whoever controls the name's zone decides.
    Dns,
    /// A name pinned by the operator's hosts map: the operator's explicit choice.
    Pinned,
}

/// The server's own sockets, which a sandbox must not reach through the proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Protected {
    /// Listening sockets as (ip, port). `None`, or an unspecified ip (0.0.0.0, ::), is a socket
    /// bound on every address of the host; since this module does not know the host's
    /// addresses, such an entry protects the port on every address.
    pub own: Vec<(Option<IpAddr>, u16)>,
}

impl Protected {
    /// Whether `ip` (canonical) and `port` reach one of the server's sockets.
    fn is_own(&self, ip: IpAddr, port: u16) -> bool {
        self.own.iter().any(|&(own_ip, own_port)| {
            own_port == port
                && own_ip.map(|own| own.to_canonical()).is_none_or(|own| own.is_unspecified() || own == ip)
        })
    }
}

/// The outcome for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the connection may go ahead.
    pub allow: bool,
    /// What decided, for logs and the client's error: "rule 2: allow *.example.com",
    /// "default: deny", "protected: cloud metadata address", "mode none".
    pub rule: String,
}

impl Decision {
    fn by_rule(index: usize, rule: &Rule) -> Decision {
        Decision {
            allow: rule.action == Action::Allow,
            rule: format!("rule {}: {} {}", index + 1, rule.action.as_str(), rule.target),
        }
    }
}

/// Decides whether a connection to `addr`, asked for as `host` and found through `source`, may
/// go ahead under `policy`. Protected addresses are checked first and open only to a CIDR rule
/// that contains them; then the rules in order, the first match deciding; then the default.
pub fn decide(
    policy: &NetworkPolicy,
    protected: &Protected,
    host: &Host,
    addr: SocketAddr,
    source: Source,
) -> Decision {
    match policy.mode {
        Mode::None => return Decision { allow: false, rule: "mode none".to_owned() },
        // The proxy is not in the path in host mode; answered anyway so that the function is total.
        Mode::Host => return Decision { allow: true, rule: "mode host".to_owned() },
        Mode::Allowlist => {}
    }
    // ::ffff:169.254.169.254 reaches the same service as 169.254.169.254.
    let ip = addr.ip().to_canonical();
    let mut rules = policy.rules.iter().enumerate();
    if let Some((label, range)) = protection(protected, ip, addr.port(), source) {
        let names = |rule: &Rule| matches!(&rule.target, Target::Cidr(cidr) if cidr.contains(ip) && cidr.within(&range));
        return match rules.find(|(_, rule)| names(rule)) {
            Some((index, rule)) => Decision::by_rule(index, rule),
            None => Decision { allow: false, rule: format!("protected: {label}") },
        };
    }
    match rules.find(|(_, rule)| matches(&rule.target, host, ip)) {
        Some((index, rule)) => Decision::by_rule(index, rule),
        None => Decision {
            allow: policy.default_action == Action::Allow,
            rule: format!("default: {}", policy.default_action.as_str()),
        },
    }
}

/// Cloud metadata services: AWS, GCP, Azure and OpenStack (169.254.169.254), Alibaba
/// (100.100.100.200), AWS over IPv6 (fd00:ec2::254). They hand out the host's credentials.
const METADATA: [IpAddr; 3] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
];

/// Why `ip` (canonical) is protected, if it is, and the range a rule must stay inside to open it.
/// The order puts the most precise label first.
fn protection(protected: &Protected, ip: IpAddr, port: u16, source: Source) -> Option<(&'static str, Cidr)> {
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    let unroutable = match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 0 || v4.is_broadcast() || v4.is_multicast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    };
    let exact = Cidr::network(ip, 128);
    if METADATA.contains(&ip) {
        Some(("cloud metadata address", exact))
    } else if link_local {
        let range = match ip {
            IpAddr::V4(_) => Cidr::network(IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)), 16),
            IpAddr::V6(_) => Cidr::network(IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)), 10),
        };
        Some(("link-local address", range))
    } else if unroutable {
        Some(("unroutable address", exact))
    } else if protected.is_own(ip, port) {
        Some(("the server's own address", exact))
    } else if ip.is_loopback() && source != Source::Pinned {
        // A pinned name is the operator's choice (a service on the host); a name whose DNS
        // answer is 127.0.0.1 is anyone's.
        let range = match ip {
            IpAddr::V4(_) => Cidr::network(IpAddr::V4(Ipv4Addr::LOCALHOST), 8),
            IpAddr::V6(_) => exact,
        };
        Some(("loopback address", range))
    } else {
        None
    }
}

/// The refusal of `name` when no address it could resolve to would be allowed, so that the
/// proxy refuses it without a lookup (a lookup of a denied name would carry it to a DNS
/// server). `None` means: resolve, and decide per address.
pub fn refuse_by_name(policy: &NetworkPolicy, name: &str) -> Option<Decision> {
    match policy.mode {
        Mode::None => return Some(Decision { allow: false, rule: "mode none".to_owned() }),
        Mode::Host => return None,
        Mode::Allowlist => {}
    }
    let host = Host::Name(name.to_owned());
    for (index, rule) in policy.rules.iter().enumerate() {
        match &rule.target {
            // Some address could fall in it.
            Target::Cidr(_) if rule.action == Action::Allow => return None,
            Target::Cidr(_) => {}
            target => {
                if matches(target, &host, IpAddr::V4(Ipv4Addr::UNSPECIFIED)) {
                    return match rule.action {
                        Action::Allow => None,
                        Action::Deny => Some(Decision::by_rule(index, rule)),
                    };
                }
            }
        }
    }
    match policy.default_action {
        Action::Allow => None,
        Action::Deny => Some(Decision { allow: false, rule: "default: deny".to_owned() }),
    }
}

fn matches(target: &Target, host: &Host, ip: IpAddr) -> bool {
    match (target, host) {
        (Target::Domain(domain), Host::Name(name)) => name == domain,
        (Target::Wildcard(suffix), Host::Name(name)) => {
            name.strip_suffix(suffix.as_str()).is_some_and(|label| label.ends_with('.'))
        }
        (Target::Cidr(cidr), _) => cidr.contains(ip),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> Host {
        Host::Name(n.to_owned())
    }

    fn sock(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn rule(action: Action, target: &str) -> Rule {
        Rule { action, target: target.parse().unwrap() }
    }

    fn allowlist(default_action: Action, rules: &[(Action, &str)]) -> NetworkPolicy {
        NetworkPolicy::allowlist(default_action, rules.iter().map(|&(a, t)| rule(a, t)).collect())
    }

    fn check(policy: &NetworkPolicy, host: &Host, addr: &str, source: Source) -> (bool, String) {
        let d = decide(policy, &Protected::default(), host, sock(addr), source);
        (d.allow, d.rule)
    }

    fn yes(rule: &str) -> (bool, String) {
        (true, rule.to_owned())
    }

    fn no(rule: &str) -> (bool, String) {
        (false, rule.to_owned())
    }

    #[test]
    fn authorities() {
        let ip = |s: &str| Host::Ip(s.parse().unwrap());
        assert_eq!(parse_authority("example.com", 443), Ok((name("example.com"), 443)));
        assert_eq!(parse_authority("Example.COM.:8080", 443), Ok((name("example.com"), 8080)));
        assert_eq!(parse_authority("10.0.0.1:443", 80), Ok((ip("10.0.0.1"), 443)));
        assert_eq!(parse_authority("[2001:db8::1]:443", 80), Ok((ip("2001:db8::1"), 443)));
        assert_eq!(parse_authority("[::1]", 80), Ok((ip("::1"), 80)));
        assert_eq!(parse_authority("[::ffff:127.0.0.1]:1", 80), Ok((ip("::ffff:127.0.0.1"), 1)));
        assert_eq!(parse_authority("_svc.a-b.io:65535", 80), Ok((name("_svc.a-b.io"), 65535)));
    }

    #[test]
    fn bad_authorities() {
        let reason = |a: &str| parse_authority(a, 443).expect_err(a);
        assert!(reason("").contains("names no host"));
        assert!(reason(":443").contains("names no host"));
        assert!(reason("example.com:").contains("port"));
        assert!(reason("example.com:0").contains("port"));
        assert!(reason("example.com:65536").contains("port"));
        assert!(reason("example.com:+80").contains("port"));
        assert!(reason("example.com:http").contains("port"));
        assert!(reason("exämple.com").contains("not ASCII"));
        assert!(reason("user@example.com").contains("userinfo"));
        assert!(reason("user:pw@example.com:443").contains("userinfo"));
        assert!(reason("exa mple.com").contains("space"));
        assert!(reason("example.com\r\n").contains("control"));
        assert!(reason("2001:db8::1").contains("brackets"));
        assert!(reason("[2001:db8::1").contains("without ']'"));
        assert!(reason("[2001:db8::1]443").contains("after ']'"));
        assert!(reason("[10.0.0.1]:443").contains("not an IPv6 address"));
        assert!(reason("[fe80::1%eth0]").contains("not an IPv6 address"));
        assert!(reason("0x7f.1").contains("ends in a number"));
        assert!(reason("2130706433:80").contains("ends in a number"));
        assert!(reason("127.1").contains("ends in a number"));
        assert!(reason("0177.0.0.1").contains("ends in a number"));
        assert!(reason("a..b").contains("empty label"));
        assert!(reason("*.example.com").contains("'*'"));
        assert!(reason("a\nb").starts_with("\"a\\nb\""), "the input is quoted");
    }

    #[test]
    fn modes_none_and_host() {
        let host = name("example.com");
        assert_eq!(check(&NetworkPolicy::none(), &host, "1.2.3.4:443", Source::Dns), no("mode none"));
        let host_mode = NetworkPolicy { mode: Mode::Host, ..NetworkPolicy::none() };
        assert_eq!(check(&host_mode, &host, "169.254.169.254:80", Source::Dns), yes("mode host"));
    }

    #[test]
    fn domains_and_wildcards() {
        let policy =
            allowlist(Action::Deny, &[(Action::Allow, "pypi.org"), (Action::Allow, "*.example.com")]);
        let at = "93.184.216.34:443";
        assert_eq!(check(&policy, &name("pypi.org"), at, Source::Dns), yes("rule 1: allow pypi.org"));
        assert_eq!(check(&policy, &name("files.pypi.org"), at, Source::Dns), no("default: deny"));
        assert_eq!(
            check(&policy, &name("a.example.com"), at, Source::Dns),
            yes("rule 2: allow *.example.com")
        );
        assert_eq!(
            check(&policy, &name("a.b.example.com"), at, Source::Dns),
            yes("rule 2: allow *.example.com")
        );
        assert_eq!(
            check(&policy, &name("example.com"), at, Source::Dns),
            no("default: deny"),
            "not the apex"
        );
        assert_eq!(check(&policy, &name("badexample.com"), at, Source::Dns), no("default: deny"));
        let open = allowlist(Action::Allow, &[]);
        assert_eq!(check(&open, &name("x.org"), at, Source::Dns), yes("default: allow"));
    }

    #[test]
    fn cidr_rules_and_literals() {
        let policy =
            allowlist(Action::Deny, &[(Action::Allow, "example.com"), (Action::Allow, "10.0.0.0/8")]);
        assert_eq!(
            check(&policy, &name("internal.corp"), "10.1.2.3:443", Source::Dns),
            yes("rule 2: allow 10.0.0.0/8"),
            "a CIDR rule matches the resolved address"
        );
        let literal = Host::Ip("93.184.216.34".parse().unwrap());
        assert_eq!(
            check(&policy, &literal, "93.184.216.34:443", Source::Literal),
            no("default: deny"),
            "an IP literal never matches a domain rule"
        );
        let mapped = Host::Ip("::ffff:10.9.9.9".parse().unwrap());
        assert_eq!(
            check(&policy, &mapped, "[::ffff:10.9.9.9]:443", Source::Literal),
            yes("rule 2: allow 10.0.0.0/8")
        );
    }

    #[test]
    fn first_match_wins() {
        let policy =
            allowlist(Action::Allow, &[(Action::Deny, "evil.example.com"), (Action::Allow, "*.example.com")]);
        let at = "93.184.216.34:443";
        assert_eq!(
            check(&policy, &name("evil.example.com"), at, Source::Dns),
            no("rule 1: deny evil.example.com")
        );
        assert_eq!(
            check(&policy, &name("ok.example.com"), at, Source::Dns),
            yes("rule 2: allow *.example.com")
        );
    }

    #[test]
    fn metadata_and_link_local_are_protected() {
        let policy = allowlist(Action::Allow, &[(Action::Allow, "metadata.google.internal")]);
        let host = name("metadata.google.internal");
        assert_eq!(
            check(&policy, &host, "169.254.169.254:80", Source::Dns),
            no("protected: cloud metadata address")
        );
        assert_eq!(
            check(&policy, &host, "[::ffff:169.254.169.254]:80", Source::Pinned),
            no("protected: cloud metadata address")
        );
        assert_eq!(
            check(&policy, &host, "100.100.100.200:80", Source::Dns),
            no("protected: cloud metadata address")
        );
        assert_eq!(
            check(&policy, &host, "[fd00:ec2::254]:80", Source::Dns),
            no("protected: cloud metadata address")
        );
        assert_eq!(check(&policy, &host, "169.254.1.1:80", Source::Dns), no("protected: link-local address"));
        assert_eq!(
            check(&policy, &host, "[fe80::1]:80", Source::Pinned),
            no("protected: link-local address")
        );
        for unroutable in
            ["0.0.0.0:80", "0.1.2.3:80", "255.255.255.255:80", "224.0.0.1:80", "[::]:80", "[ff02::1]:80"]
        {
            assert_eq!(
                check(&policy, &host, unroutable, Source::Pinned),
                no("protected: unroutable address")
            );
        }
    }

    #[test]
    fn a_broad_rule_does_not_open_a_protected_address() {
        let policy = allowlist(Action::Allow, &[(Action::Allow, "0.0.0.0/0"), (Action::Allow, "::/0")]);
        let host = Host::Ip("169.254.169.254".parse().unwrap());
        assert_eq!(
            check(&policy, &host, "169.254.169.254:80", Source::Literal),
            no("protected: cloud metadata address")
        );
        let loopback = Host::Ip("127.0.0.1".parse().unwrap());
        assert_eq!(
            check(&policy, &loopback, "127.0.0.1:5432", Source::Literal),
            no("protected: loopback address")
        );
        let opened = allowlist(Action::Deny, &[(Action::Allow, "127.0.0.0/8")]);
        assert_eq!(
            check(&opened, &loopback, "127.0.0.1:5432", Source::Literal),
            yes("rule 1: allow 127.0.0.0/8")
        );
    }

    #[test]
    fn names_no_address_could_allow_are_refused_before_a_lookup() {
        let by_domain = allowlist(
            Action::Deny,
            &[
                (Action::Deny, "bad.example.com"),
                (Action::Allow, "*.example.com"),
                (Action::Deny, "10.0.0.0/8"),
            ],
        );
        assert_eq!(
            refuse_by_name(&by_domain, "bad.example.com").map(|d| (d.allow, d.rule)),
            Some(no("rule 1: deny bad.example.com"))
        );
        assert_eq!(refuse_by_name(&by_domain, "ok.example.com"), None);
        assert_eq!(
            refuse_by_name(&by_domain, "other.org").map(|d| (d.allow, d.rule)),
            Some(no("default: deny"))
        );
        let by_address = allowlist(Action::Deny, &[(Action::Allow, "203.0.113.0/24")]);
        assert_eq!(refuse_by_name(&by_address, "other.org"), None, "it may resolve into the allowed network");
        assert_eq!(
            refuse_by_name(&NetworkPolicy::none(), "example.com").map(|d| (d.allow, d.rule)),
            Some(no("mode none"))
        );
        assert_eq!(refuse_by_name(&allowlist(Action::Allow, &[]), "example.com"), None);
    }

    #[test]
    fn a_cidr_rule_opens_a_protected_address() {
        let policy = allowlist(
            Action::Deny,
            &[
                (Action::Allow, "metadata.google.internal"),
                (Action::Deny, "169.254.169.253"),
                (Action::Allow, "169.254.169.254"),
                (Action::Allow, "169.254.0.0/16"),
            ],
        );
        let host = name("metadata.google.internal");
        assert_eq!(
            check(&policy, &host, "169.254.169.254:80", Source::Dns),
            yes("rule 3: allow 169.254.169.254"),
            "the domain rule does not open it; the first containing CIDR rule does"
        );
        assert_eq!(
            check(&policy, &host, "169.254.169.253:80", Source::Dns),
            no("rule 2: deny 169.254.169.253")
        );
        assert_eq!(
            check(&policy, &host, "[::ffff:169.254.9.9]:80", Source::Dns),
            yes("rule 4: allow 169.254.0.0/16")
        );
    }

    #[test]
    fn the_servers_own_sockets() {
        let policy = allowlist(Action::Allow, &[]);
        let any = Protected { own: vec![(None, 8080)] };
        let host = name("example.com");
        let run = |protected: &Protected, addr: &str, source| {
            let d = decide(&policy, protected, &host, sock(addr), source);
            (d.allow, d.rule)
        };
        let own = no("protected: the server's own address");
        assert_eq!(run(&any, "127.0.0.1:8080", Source::Pinned), own);
        assert_eq!(run(&any, "192.168.1.5:8080", Source::Dns), own);
        assert_eq!(run(&any, "192.168.1.5:8081", Source::Dns), yes("default: allow"));
        let unspecified = Protected { own: vec![(Some("::".parse().unwrap()), 9000)] };
        assert_eq!(run(&unspecified, "10.0.0.1:9000", Source::Dns), own);
        let one = Protected { own: vec![(Some("10.0.0.5".parse().unwrap()), 9000)] };
        assert_eq!(run(&one, "10.0.0.5:9000", Source::Pinned), own);
        assert_eq!(run(&one, "[::ffff:10.0.0.5]:9000", Source::Pinned), own);
        assert_eq!(run(&one, "10.0.0.6:9000", Source::Pinned), yes("default: allow"));
        assert_eq!(run(&one, "127.0.0.1:9000", Source::Pinned), yes("default: allow"));
    }

    #[test]
    fn loopback_depends_on_the_source() {
        let policy = allowlist(Action::Deny, &[(Action::Allow, "db.local")]);
        let host = name("db.local");
        assert_eq!(check(&policy, &host, "127.0.0.1:5432", Source::Dns), no("protected: loopback address"));
        assert_eq!(check(&policy, &host, "[::1]:5432", Source::Dns), no("protected: loopback address"));
        assert_eq!(
            check(&policy, &host, "[::ffff:127.0.0.1]:5432", Source::Dns),
            no("protected: loopback address")
        );
        let literal = Host::Ip("127.0.0.1".parse().unwrap());
        assert_eq!(
            check(&policy, &literal, "127.0.0.1:5432", Source::Literal),
            no("protected: loopback address")
        );
        assert_eq!(check(&policy, &host, "127.0.0.1:5432", Source::Pinned), yes("rule 1: allow db.local"));
        assert_eq!(
            check(&policy, &name("other.local"), "127.0.0.1:5432", Source::Pinned),
            no("default: deny")
        );
    }
}
