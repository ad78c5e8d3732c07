//! A sandbox's network policy as data: the mode, an ordered list of rules and the action when no
//! rule matches. Parsing puts every target in one canonical form, so rules compare, deduplicate
//! and display the same however the client wrote them. Nothing here touches the network.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// The most rules a policy may hold: every connection scans them in order.
pub const MAX_RULES: usize = 256;

/// What a rule, or the policy's default, does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Let the connection through.
    Allow,
    /// Refuse it.
    Deny,
}

impl Action {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        }
    }
}

/// How a sandbox reaches the network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// No network at all: the default, because untrusted code should not reach out unless asked.
    #[default]
    None,
    /// Only through the egress proxy, which applies the rules.
    Allowlist,
    /// The host's network, unfiltered.
    Host,
}

impl Mode {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Allowlist => "allowlist",
            Mode::Host => "host",
        }
    }
}

/// An IP network. Host bits beyond the prefix are accepted and cleared ("10.1.2.3/8" is
/// 10.0.0.0/8), since what was meant is clear. An IPv4-mapped IPv6 network
/// ("::ffff:10.0.0.0/104") is stored as the IPv4 network it denotes, so both spellings of an
/// IPv4 address fall in the same rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Canonical form: IPv4-mapped networks as IPv4, host bits cleared.
    fn new(addr: IpAddr, prefix: u8) -> Cidr {
        match addr {
            IpAddr::V4(v4) => Cidr { addr: IpAddr::V4((u32::from(v4) & mask_v4(prefix)).into()), prefix },
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                // The mapped prefix ::ffff:0:0/96 is the first 96 bits; a shorter prefix also
                // covers real IPv6 addresses and stays IPv6.
                Some(v4) if prefix >= 96 => Cidr::new(IpAddr::V4(v4), prefix - 96),
                _ => Cidr { addr: IpAddr::V6((u128::from(v6) & mask_v6(prefix)).into()), prefix },
            },
        }
    }

    /// Whether `ip` is in the network. An IPv4-mapped IPv6 address counts as its IPv4 address;
    /// IPv4 addresses are only in IPv4 networks (write 0.0.0.0/0, not ::/0, for all of them).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => u32::from(ip) & mask_v4(self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => u128::from(ip) & mask_v6(self.prefix) == u128::from(net),
            _ => false,
        }
    }

    /// The network of `prefix` bits around `addr`.
    pub fn network(addr: IpAddr, prefix: u8) -> Cidr {
        Cidr::new(addr, prefix.min(Cidr::max_prefix(addr)))
    }

    /// Whether this whole network lies inside `outer` (so a rule for it names part of `outer`
    /// and nothing beyond).
    pub fn within(&self, outer: &Cidr) -> bool {
        self.prefix >= outer.prefix && outer.contains(self.addr)
    }

    fn max_prefix(addr: IpAddr) -> u8 {
        if addr.is_ipv4() {
            32
        } else {
            128
        }
    }
}

fn mask_v4(prefix: u8) -> u32 {
    // A shift by the full width overflows; prefix 0 is the empty mask.
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = PolicyError;

    /// "10.0.0.0/8", "2001:db8::/32", or a single address ("10.1.2.3", "::1", "[::1]") for its
    /// /32 or /128.
    fn from_str(text: &str) -> Result<Cidr, PolicyError> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr = match addr_text.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
            Some(inner) => inner.parse::<Ipv6Addr>().map(IpAddr::V6).ok(),
            None => addr_text.parse::<IpAddr>().ok(),
        }
        .ok_or_else(|| target_error(text, format!("{} is not an IP address", quoted(addr_text))))?;
        let max = Cidr::max_prefix(addr);
        let prefix = match prefix_text {
            None => max,
            Some(p) => match p.parse::<u8>() {
                // u8's parser takes a leading '+'; a prefix is digits only.
                Ok(prefix) if prefix <= max && p.bytes().all(|b| b.is_ascii_digit()) => prefix,
                _ => return Err(target_error(text, format!("the prefix must be a number from 0 to {max}"))),
            },
        };
        Ok(Cidr::new(addr, prefix))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == Cidr::max_prefix(self.addr) {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// What a rule matches, in canonical form: lowercase names without the trailing dot, networks
/// with their host bits cleared.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Exactly this name ("example.com").
    Domain(String),
    /// Every name strictly below this suffix: "*.example.com" holds "example.com" and matches
    /// "a.example.com" and "a.b.example.com" but not "example.com" itself, so allowing a
    /// service's subdomains does not silently allow its apex too.
    Wildcard(String),
    /// Addresses in a network; a single address is a /32 or /128.
    Cidr(Cidr),
}

impl Target {
    /// Parses "example.com", "*.example.com", "10.1.2.3", "10.0.0.0/8", "2001:db8::/32" or
    /// "[::1]". Anything that reads as an address is an address target, never a name.
    pub fn parse(text: &str) -> Result<Target, PolicyError> {
        if text.is_empty() {
            return Err(PolicyError::new("target", "is empty"));
        }
        if text.starts_with('[') || text.contains('/') || text.parse::<IpAddr>().is_ok() {
            return text.parse().map(Target::Cidr);
        }
        if let Some(rest) = text.strip_prefix('*') {
            let suffix =
                rest.strip_prefix('.').filter(|s| !s.is_empty() && !s.contains('*')).ok_or_else(|| {
                    target_error(
                        text,
                        "a wildcard is \"*.\" followed by a domain, as in \"*.example.com\"".into(),
                    )
                })?;
            return normalize_domain(suffix)
                .map(Target::Wildcard)
                .map_err(|reason| target_error(text, reason));
        }
        if text.contains('*') {
            return Err(target_error(text, "'*' may only start a wildcard, as in \"*.example.com\"".into()));
        }
        normalize_domain(text).map(Target::Domain).map_err(|reason| target_error(text, reason))
    }
}

impl FromStr for Target {
    type Err = PolicyError;

    fn from_str(text: &str) -> Result<Target, PolicyError> {
        Target::parse(text)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Domain(name) => f.write_str(name),
            Target::Wildcard(suffix) => write!(f, "*.{suffix}"),
            Target::Cidr(cidr) => cidr.fmt(f),
        }
    }
}

// A target travels as its canonical text, so the JSON reads like the API docs.
impl Serialize for Target {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Target, D::Error> {
        let text = String::deserialize(deserializer)?;
        // The deserializer adds where in the document it was; the reason already quotes the text.
        Target::parse(&text).map_err(|e| de::Error::custom(e.reason))
    }
}

/// Lowercases a host name, strips one trailing dot (the root) and checks that it is a name a
/// resolver looks up as a name. Shared with the proxy's authority parsing, so that a rule and a
/// request agree on what a name is.
pub(crate) fn normalize_domain(name: &str) -> Result<String, String> {
    if !name.is_ascii() {
        return Err("is not ASCII; write an internationalized name in its xn-- form".to_owned());
    }
    let lower = name.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() {
        return Err("names no host".to_owned());
    }
    // RFC 1035 section 2.3.4: 253 characters in text form, 63 per label.
    if name.len() > 253 {
        return Err("is longer than 253 characters".to_owned());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("has an empty label".to_owned());
        }
        if label.len() > 63 {
            return Err(format!("has a label longer than 63 characters ({})", quoted(label)));
        }
        // Underscores are not in RFC 1123 host names, but real hosts use them (_dmarc, s3 buckets).
        if let Some(c) = label.chars().find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
            return Err(format!("has the character {c:?}; a name has letters, digits, '-', '_' and '.'"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("has a label that starts or ends with '-' ({})", quoted(label)));
        }
    }
    // inet_aton and the WHATWG URL parser read "127.1", "0x7f.1" and "2130706433" as 127.0.0.1:
    // a name ending in a number would be a loopback address behind a name-shaped rule.
    let last = name.rsplit('.').next().unwrap_or(name);
    let hex = last.strip_prefix("0x").is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_hexdigit()));
    if hex || last.bytes().all(|b| b.is_ascii_digit()) {
        return Err("ends in a number, which resolvers read as an IPv4 address; write the address as \
                    four decimal numbers, as in 127.0.0.1"
            .to_owned());
    }
    Ok(name.to_owned())
}

/// The text of untrusted input for a message: debug-quoted so control characters cannot forge
/// log lines, and cut short so a huge input does not make a huge error.
pub(crate) fn quoted(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{:?}...", &text[..end]),
        None => format!("{text:?}"),
    }
}

fn target_error(text: &str, reason: String) -> PolicyError {
    PolicyError::new("target", format!("{}: {reason}", quoted(text)))
}

/// One line of the policy: connections to `target` get `action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// What to do on a match.
    pub action: Action,
    /// What it matches.
    pub target: Target,
}

/// A sandbox's network policy. Rules are tried in order and the first match decides; with none
/// matching, `default_action` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkPolicy {
    /// How the sandbox reaches the network.
    pub mode: Mode,
    /// What happens to a connection no rule matches.
    pub default_action: Action,
    /// The rules, highest priority first.
    pub rules: Vec<Rule>,
}

impl Default for NetworkPolicy {
    fn default() -> Self {
        NetworkPolicy::none()
    }
}

impl NetworkPolicy {
    /// No network: the default.
    pub fn none() -> Self {
        NetworkPolicy { mode: Mode::None, default_action: Action::Deny, rules: Vec::new() }
    }

    /// Traffic through the proxy, filtered by `rules` and then `default_action`.
    pub fn allowlist(default_action: Action, rules: Vec<Rule>) -> Self {
        NetworkPolicy { mode: Mode::Allowlist, default_action, rules }
    }

    /// Checks that the policy means what it says: settings that only the proxy applies are
    /// refused in the modes that have no proxy rather than silently ignored.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.mode != Mode::Allowlist && !self.rules.is_empty() {
            return Err(PolicyError::new(
                "rules",
                format!("rules need mode allowlist; mode is {}", self.mode.as_str()),
            ));
        }
        if self.mode == Mode::None && self.default_action == Action::Allow {
            return Err(PolicyError::new(
                "default_action",
                "allow needs mode allowlist or host; mode none has no network",
            ));
        }
        if self.rules.len() > MAX_RULES {
            return Err(PolicyError::new(
                "rules",
                format!("has {} rules; a policy has at most {MAX_RULES}", self.rules.len()),
            ));
        }
        // The first rule for a target decides, so a second one would never apply: most likely
        // a mistake, and it would make patching by target ambiguous.
        let mut first: HashMap<&Target, usize> = HashMap::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(earlier) = first.insert(&rule.target, i) {
                return Err(PolicyError::new(
                    format!("rules[{i}].target"),
                    format!("{} repeats the target of rules[{earlier}], which decides first", rule.target),
                ));
            }
        }
        Ok(())
    }

    /// The policy with `patch` applied, validated. The semantics follow the OpenSandbox egress
    /// API's PATCH: `remove` deletes rules by target (absent ones are ignored, so a retried patch
    /// succeeds); then the patch's rules go ahead of the remaining ones, replacing any rule with
    /// the same target, the first of the patch's rules for a target winning; `mode` and
    /// `default_action` replace the current ones when given.
    pub fn patched(&self, patch: &PolicyPatch) -> Result<NetworkPolicy, PolicyError> {
        let mut incoming: HashSet<&Target> = HashSet::new();
        let mut rules: Vec<Rule> =
            patch.rules.iter().filter(|rule| incoming.insert(&rule.target)).cloned().collect();
        let removed: HashSet<&Target> = patch.remove.iter().collect();
        rules.extend(
            self.rules
                .iter()
                .filter(|rule| !removed.contains(&rule.target) && !incoming.contains(&rule.target))
                .cloned(),
        );
        let policy = NetworkPolicy {
            mode: patch.mode.unwrap_or(self.mode),
            default_action: patch.default_action.unwrap_or(self.default_action),
            rules,
        };
        policy.validate()?;
        Ok(policy)
    }
}

/// A change to a policy; see [`NetworkPolicy::patched`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyPatch {
    /// The new mode, if it changes.
    pub mode: Option<Mode>,
    /// The new default action, if it changes.
    pub default_action: Option<Action>,
    /// Rules to put ahead of the existing ones.
    pub rules: Vec<Rule>,
    /// Targets whose rules to delete first.
    pub remove: Vec<Target>,
}

/// A policy that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid network policy: {field}: {reason}")]
pub struct PolicyError {
    /// Where in the policy, as the JSON names it ("rules[2].target").
    pub field: String,
    /// What is wrong there.
    pub reason: String,
}

impl PolicyError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> PolicyError {
        PolicyError { field: field.into(), reason: reason.into() }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        "NETWORK_POLICY_INVALID"
    }

    /// What a valid policy looks like.
    pub fn hint(&self) -> String {
        format!(
            "a policy looks like {{\"mode\": \"allowlist\", \"default_action\": \"deny\", \"rules\": \
             [{{\"action\": \"allow\", \"target\": \"pypi.org\"}}]}}; mode is none, allowlist or host, \
             and only allowlist takes rules (at most {MAX_RULES}, one per target, the first match \
             deciding); a target is a domain (pypi.org), its subdomains (*.pypi.org), an IP address \
             (10.1.2.3, 2001:db8::1) or a network (10.0.0.0/8, 2001:db8::/32)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(text: &str) -> Target {
        Target::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn rule(action: Action, text: &str) -> Rule {
        Rule { action, target: target(text) }
    }

    fn reason(text: &str) -> String {
        let err = Target::parse(text).expect_err(text);
        assert_eq!(err.field, "target");
        err.reason
    }

    #[test]
    fn domains_are_canonical() {
        assert_eq!(target("Example.COM."), Target::Domain("example.com".into()));
        assert_eq!(target("pypi.org").to_string(), "pypi.org");
        assert_eq!(target("_dmarc.example.com").to_string(), "_dmarc.example.com");
        assert_eq!(target("localhost"), Target::Domain("localhost".into()));
        assert_eq!(target("a-b.c0.example").to_string(), "a-b.c0.example");
        assert_eq!(target(&format!("{}.com", "a".repeat(63))).to_string().len(), 67);
    }

    #[test]
    fn wildcards_store_the_suffix() {
        assert_eq!(target("*.Example.com."), Target::Wildcard("example.com".into()));
        assert_eq!(target("*.example.com").to_string(), "*.example.com");
    }

    #[test]
    fn addresses_and_networks() {
        assert_eq!(target("10.1.2.3").to_string(), "10.1.2.3");
        assert_eq!(target("10.1.2.3/32").to_string(), "10.1.2.3");
        assert_eq!(target("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(target("10.1.2.3/8"), target("10.0.0.0/8"), "host bits are cleared");
        assert_eq!(target("2001:db8::/32").to_string(), "2001:db8::/32");
        assert_eq!(target("::1").to_string(), "::1");
        assert_eq!(target("::1/128"), target("::1"));
        assert_eq!(target("[::1]"), target("::1"));
        assert_eq!(target("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(target("::ffff:10.0.0.1").to_string(), "10.0.0.1", "mapped addresses are IPv4");
        assert_eq!(target("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
    }

    #[test]
    fn cidr_contains() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.255.0.1")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(net.contains(ip("::ffff:10.0.0.1")), "a mapped address is its IPv4 address");
        let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert!(mapped.contains(ip("10.9.9.9")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!"::/0".parse::<Cidr>().unwrap().contains(ip("10.0.0.1")), "families stay apart");
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("::ffff:1.2.3.4")));
        assert!("::/0".parse::<Cidr>().unwrap().contains(ip("2001:db8::1")));
        let host: Cidr = "10.1.2.3".parse().unwrap();
        assert!(host.contains(ip("10.1.2.3")) && !host.contains(ip("10.1.2.4")));
    }

    #[test]
    fn rejected_targets_say_why() {
        assert_eq!(Target::parse("").unwrap_err().reason, "is empty");
        assert!(reason("*").contains("a wildcard is"));
        assert!(reason("*.").contains("a wildcard is"));
        assert!(reason("*example.com").contains("a wildcard is"));
        assert!(reason("*.*.example.com").contains("a wildcard is"));
        assert!(reason("a.*.b").contains("may only start a wildcard"));
        assert!(reason("exämple.com").contains("not ASCII"));
        assert!(reason("a..b").contains("empty label"));
        assert!(reason(".").contains("names no host"));
        assert!(reason("example.com..").contains("empty label"), "only one trailing dot is stripped");
        assert!(reason("-a.com").contains("'-'"));
        assert!(reason("a-.com").contains("'-'"));
        assert!(reason("exa mple.com").contains("' '"));
        assert!(reason("example.com:443").contains("':'"));
        assert!(reason(&format!("{}.com", "a".repeat(64))).contains("63"));
        assert!(reason(&format!("{}a", "a.".repeat(127))).contains("253"));
        assert!(reason("127.1").contains("ends in a number"));
        assert!(reason("0x7f.1").contains("ends in a number"));
        assert!(reason("a.0x7F").contains("ends in a number"));
        assert!(reason("2130706433").contains("ends in a number"));
        assert!(reason("*.10.0.0.1").contains("ends in a number"));
        assert!(reason("10.0.0.0/33").contains("0 to 32"));
        assert!(reason("::/129").contains("0 to 128"));
        assert!(reason("10.0.0.0/").contains("0 to 32"));
        assert!(reason("10.0.0.0/+8").contains("0 to 32"));
        assert!(reason("example.com/8").contains("not an IP address"));
        assert!(reason("[10.0.0.1]").contains("not an IP address"));
        assert!(reason("[::1").contains("not an IP address"));
        assert!(reason("010.0.0.1").contains("ends in a number"), "no octal octets");
    }

    #[test]
    fn errors_quote_the_input_safely() {
        let err = Target::parse("a\nb.com").unwrap_err();
        assert!(err.reason.starts_with("\"a\\nb.com\""), "{}", err.reason);
        let long = format!("{}*", "a".repeat(1000));
        assert!(Target::parse(&long).unwrap_err().reason.len() < 200);
    }

    #[test]
    fn serde_round_trip() {
        let json = r#"{"mode": "allowlist", "default_action": "deny", "rules": [
            {"action": "allow", "target": "*.PyPI.org."},
            {"action": "deny", "target": "10.1.2.3/8"}]}"#;
        let policy: NetworkPolicy = serde_json::from_str(json).unwrap();
        assert_eq!(
            policy,
            NetworkPolicy::allowlist(
                Action::Deny,
                vec![rule(Action::Allow, "*.pypi.org"), rule(Action::Deny, "10.0.0.0/8")]
            )
        );
        let text = serde_json::to_string(&policy).unwrap();
        assert_eq!(
            text,
            r#"{"mode":"allowlist","default_action":"deny","rules":[{"action":"allow","target":"*.pypi.org"},{"action":"deny","target":"10.0.0.0/8"}]}"#
        );
        assert_eq!(serde_json::from_str::<NetworkPolicy>(&text).unwrap(), policy);
    }

    #[test]
    fn serde_defaults_and_rejections() {
        assert_eq!(serde_json::from_str::<NetworkPolicy>("{}").unwrap(), NetworkPolicy::default());
        assert_eq!(NetworkPolicy::default(), NetworkPolicy::none());
        assert_eq!(NetworkPolicy::none().mode, Mode::None);
        assert_eq!(NetworkPolicy::none().default_action, Action::Deny);
        let err = serde_json::from_str::<NetworkPolicy>(r#"{"mode": "none", "egress": []}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `egress`"), "{err}");
        let err =
            serde_json::from_str::<Rule>(r#"{"action": "allow", "target": "a.com", "port": 1}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `port`"), "{err}");
        let err = serde_json::from_str::<PolicyPatch>(r#"{"rules": [], "add": []}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `add`"), "{err}");
        let err = serde_json::from_str::<Rule>(r#"{"action": "allow", "target": "a.*.b"}"#).unwrap_err();
        assert!(err.to_string().contains("may only start a wildcard"), "{err}");
        assert!(serde_json::from_str::<Rule>(r#"{"action": "Allow", "target": "a.com"}"#).is_err());
        assert!(serde_json::from_str::<NetworkPolicy>(r#"{"mode": "bridge"}"#).is_err());
        let patch: PolicyPatch =
            serde_json::from_str(r#"{"mode": "allowlist", "remove": ["A.com"]}"#).unwrap();
        assert_eq!(patch.mode, Some(Mode::Allowlist));
        assert_eq!(patch.remove, vec![target("a.com")]);
    }

    #[test]
    fn validation_names_the_field() {
        let mut policy = NetworkPolicy::allowlist(Action::Deny, vec![rule(Action::Allow, "a.com")]);
        assert_eq!(policy.validate(), Ok(()));

        policy.mode = Mode::None;
        let err = policy.validate().unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.reason.as_str()),
            ("rules", "rules need mode allowlist; mode is none")
        );
        policy.mode = Mode::Host;
        assert_eq!(policy.validate().unwrap_err().field, "rules");

        let allow_none = NetworkPolicy { default_action: Action::Allow, ..NetworkPolicy::none() };
        assert_eq!(allow_none.validate().unwrap_err().field, "default_action");
        let host = NetworkPolicy { mode: Mode::Host, default_action: Action::Allow, rules: vec![] };
        assert_eq!(host.validate(), Ok(()));

        let many = (0..=MAX_RULES).map(|i| rule(Action::Allow, &format!("h{i}.com"))).collect();
        let err = NetworkPolicy::allowlist(Action::Deny, many).validate().unwrap_err();
        assert_eq!(err.field, "rules");
        assert!(err.reason.contains("at most 256"), "{}", err.reason);
        let most = (0..MAX_RULES).map(|i| rule(Action::Allow, &format!("h{i}.com"))).collect();
        assert_eq!(NetworkPolicy::allowlist(Action::Deny, most).validate(), Ok(()));

        let twice = NetworkPolicy::allowlist(
            Action::Deny,
            vec![rule(Action::Allow, "a.com"), rule(Action::Deny, "b.com"), rule(Action::Deny, "A.com.")],
        );
        let err = twice.validate().unwrap_err();
        assert_eq!(err.field, "rules[2].target");
        assert!(err.reason.contains("rules[0]"), "{}", err.reason);
        assert_eq!(err.to_string(), format!("invalid network policy: rules[2].target: {}", err.reason));
    }

    #[test]
    fn error_code_and_hint() {
        let err = Target::parse("*").unwrap_err();
        assert_eq!(err.code(), "NETWORK_POLICY_INVALID");
        assert!(err.hint().contains(r#""target": "pypi.org""#));
        assert!(err.hint().contains("*.pypi.org") && err.hint().contains("10.0.0.0/8"));
    }

    fn base() -> NetworkPolicy {
        NetworkPolicy::allowlist(
            Action::Deny,
            vec![
                rule(Action::Allow, "a.com"),
                rule(Action::Allow, "b.com"),
                rule(Action::Deny, "10.0.0.0/8"),
            ],
        )
    }

    fn targets(policy: &NetworkPolicy) -> Vec<String> {
        policy.rules.iter().map(|r| format!("{} {}", r.action.as_str(), r.target)).collect()
    }

    #[test]
    fn patch_prepends_and_replaces() {
        let patch = PolicyPatch {
            rules: vec![
                rule(Action::Allow, "c.com"),
                rule(Action::Deny, "b.com"),
                rule(Action::Allow, "c.com"),
            ],
            ..PolicyPatch::default()
        };
        let patched = base().patched(&patch).unwrap();
        assert_eq!(targets(&patched), ["allow c.com", "deny b.com", "allow a.com", "deny 10.0.0.0/8"]);
        assert_eq!((patched.mode, patched.default_action), (Mode::Allowlist, Action::Deny));

        let first_wins = PolicyPatch {
            rules: vec![rule(Action::Deny, "d.com"), rule(Action::Allow, "D.com")],
            ..PolicyPatch::default()
        };
        assert_eq!(targets(&base().patched(&first_wins).unwrap())[0], "deny d.com");
        assert_eq!(base().patched(&PolicyPatch::default()).unwrap(), base());
    }

    #[test]
    fn patch_removes_then_adds() {
        let patch = PolicyPatch {
            remove: vec![target("a.com"), target("10.1.0.0/8"), target("missing.com")],
            rules: vec![rule(Action::Deny, "a.com")],
            ..PolicyPatch::default()
        };
        assert_eq!(targets(&base().patched(&patch).unwrap()), ["deny a.com", "allow b.com"]);
    }

    #[test]
    fn patch_changes_mode_and_validates_the_result() {
        let open = PolicyPatch { default_action: Some(Action::Allow), ..PolicyPatch::default() };
        assert_eq!(base().patched(&open).unwrap().default_action, Action::Allow);

        let to_none = PolicyPatch { mode: Some(Mode::None), ..PolicyPatch::default() };
        assert_eq!(base().patched(&to_none).unwrap_err().field, "rules");
        let cleared = PolicyPatch {
            mode: Some(Mode::None),
            remove: vec![target("a.com"), target("b.com"), target("10.0.0.0/8")],
            ..PolicyPatch::default()
        };
        assert_eq!(base().patched(&cleared).unwrap(), NetworkPolicy::none());

        let enable = PolicyPatch {
            mode: Some(Mode::Allowlist),
            rules: vec![rule(Action::Allow, "pypi.org")],
            ..PolicyPatch::default()
        };
        let enabled = NetworkPolicy::none().patched(&enable).unwrap();
        assert_eq!(enabled, NetworkPolicy::allowlist(Action::Deny, vec![rule(Action::Allow, "pypi.org")]));

        let full = NetworkPolicy::allowlist(
            Action::Deny,
            (0..MAX_RULES).map(|i| rule(Action::Allow, &format!("h{i}.com"))).collect(),
        );
        let one_more = PolicyPatch { rules: vec![rule(Action::Allow, "x.com")], ..PolicyPatch::default() };
        assert_eq!(full.patched(&one_more).unwrap_err().field, "rules");
        let replace = PolicyPatch { rules: vec![rule(Action::Deny, "h0.com")], ..PolicyPatch::default() };
        assert_eq!(full.patched(&replace).unwrap().rules.len(), MAX_RULES);
    }
}
