//! The plain-HTTP URLs the executor calls back: `http://HOST[:PORT][/PATH]`.

use std::fmt;

/// A parsed `http://` URL. Only plain HTTP: the executor speaks to its control plane over the
/// local network, as the Sandbox Executor does; TLS is a proxy's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host name or address, IPv6 in brackets as written.
    pub host: String,
    /// Port; 80 when the URL names none.
    pub port: u16,
    /// Path, without a trailing `/` (empty for the root).
    pub path: String,
}

impl HttpUrl {
    /// Parse `text`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<HttpUrl, String> {
        if text.len() >= 8 && text[..8].eq_ignore_ascii_case("https://") {
            return Err("https is not supported: give a plain http:// address (put a TLS proxy in \
                        front of the control plane if it only speaks https)"
                .to_owned());
        }
        let rest = match text.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("http://") => &text[7..],
            _ => return Err("must start with http://".to_owned()),
        };
        if rest.contains(['?', '#']) || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not hold a query, a fragment, spaces or control characters".to_owned());
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.contains('@') {
            return Err("must not hold a user name or password; use INTERNAL_API_TOKEN".to_owned());
        }
        let (host, port) = split_port(authority)?;
        if host.is_empty() {
            return Err("has no host".to_owned());
        }
        Ok(HttpUrl { host: host.to_owned(), port, path: path.trim_end_matches('/').to_owned() })
    }

    /// The host to connect to: an IPv6 address without its brackets.
    pub fn connect_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// The `Host` header's value.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// This URL with `suffix` (starting with `/`) added to its path.
    pub fn join(&self, suffix: &str) -> HttpUrl {
        HttpUrl { path: format!("{}{suffix}", self.path), ..self.clone() }
    }

    /// The path to request: `/` for the root.
    pub fn request_path(&self) -> &str {
        if self.path.is_empty() {
            "/"
        } else {
            &self.path
        }
    }
}

fn split_port(authority: &str) -> Result<(&str, u16), String> {
    let bad_port = || "has a port that is not a number from 1 to 65535".to_owned();
    let colon = if authority.starts_with('[') {
        let end = authority.find(']').ok_or("has an IPv6 address without its closing `]`")?;
        match &authority[end + 1..] {
            "" => None,
            rest if rest.starts_with(':') => Some(end + 1),
            _ => return Err("has text after the IPv6 address".to_owned()),
        }
    } else {
        authority.rfind(':')
    };
    match colon {
        None => Ok((authority, 80)),
        Some(at) => {
            let port: u16 = authority[at + 1..].parse().map_err(|_| bad_port())?;
            if port == 0 {
                return Err(bad_port());
            }
            Ok((&authority[..at], port))
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}:{}{}", self.host, self.port, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::HttpUrl;

    #[test]
    fn parses_what_control_planes_are_given_as() {
        let url = HttpUrl::parse("http://control-plane:8000").unwrap();
        assert_eq!((url.host.as_str(), url.port, url.path.as_str()), ("control-plane", 8000, ""));
        assert_eq!(url.request_path(), "/");
        let url = HttpUrl::parse("HTTP://10.0.0.2/prefix/").unwrap();
        assert_eq!((url.host.as_str(), url.port, url.path.as_str()), ("10.0.0.2", 80, "/prefix"));
        assert_eq!(url.join("/a").to_string(), "http://10.0.0.2:80/prefix/a");
        let url = HttpUrl::parse("http://[::1]:9000/x").unwrap();
        assert_eq!((url.connect_host(), url.port, url.authority()), ("::1", 9000, "[::1]:9000".to_owned()));
        assert_eq!(HttpUrl::parse(&url.to_string()).unwrap(), url);
    }

    #[test]
    fn refuses_what_it_cannot_call() {
        for (text, says) in [
            ("https://cp:8000", "https is not supported"),
            ("cp:8000", "http://"),
            ("http://", "no host"),
            ("http://:80", "no host"),
            ("http://cp:0", "port"),
            ("http://cp:http", "port"),
            ("http://cp:70000", "port"),
            ("http://user:pw@cp", "password"),
            ("http://cp/?q=1", "query"),
            ("http://cp/a b", "spaces"),
            ("http://[::1", "closing"),
            ("http://[::1]x", "after"),
        ] {
            let error = HttpUrl::parse(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
