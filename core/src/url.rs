//! A small parser for upstream base URLs (`scheme://host[:port][/path]`).
//!
//! Kept here instead of pulling the `url` crate into the wasm: we need only the pieces Envoy's cluster
//! and route config are built from, and strict errors for everything else.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub tls: bool,
    /// Host name or IP literal, without brackets for IPv6.
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash; empty when the URL has no path.
    pub path: String,
}

impl BaseUrl {
    pub fn parse(input: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(rest) = input.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = input.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("`{input}` must start with http:// or https://"));
        };
        if rest.contains('?') || rest.contains('#') {
            return Err(format!("`{input}` must not contain a query or fragment"));
        }
        if rest.contains('@') {
            return Err(format!(
                "`{input}` must not contain credentials; use keys instead"
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = split_host_port(authority).map_err(|e| format!("`{input}`: {e}"))?;
        let port = port.unwrap_or(if tls { 443 } else { 80 });
        if host.is_empty() {
            return Err(format!("`{input}` has no host"));
        }
        let path = path.trim_end_matches('/').to_string();
        Ok(BaseUrl {
            tls,
            host,
            port,
            path,
        })
    }

    /// `host:port` as Envoy wants it in a socket address, IPv6 literals bracketed for display.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        let default_port = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port {
            write!(f, "{scheme}://{host}{}", self.path)
        } else {
            write!(f, "{scheme}://{host}:{}{}", self.port, self.path)
        }
    }
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']').ok_or("unclosed `[` in IPv6 host")?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(parse_port(p)?),
            None if after.is_empty() => None,
            None => return Err("unexpected text after IPv6 host".into()),
        };
        return Ok((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Ok((host.to_string(), Some(parse_port(port)?))),
        None => Ok((authority.to_string(), None)),
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("bad port `{text}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_https_with_default_port() {
        let u = BaseUrl::parse("https://api.openai.com").unwrap();
        assert!(u.tls);
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("api.openai.com", 443, "")
        );
        assert_eq!(u.to_string(), "https://api.openai.com");
    }

    #[test]
    fn parses_port_and_path_and_strips_trailing_slash() {
        let u = BaseUrl::parse("http://127.0.0.1:9001/compatible-mode/v1/").unwrap();
        assert!(!u.tls);
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 9001, "/compatible-mode/v1")
        );
        assert_eq!(u.authority(), "127.0.0.1:9001");
    }

    #[test]
    fn parses_ipv6() {
        let u = BaseUrl::parse("http://[::1]:8080").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.authority(), "[::1]:8080");
        assert_eq!(u.to_string(), "http://[::1]:8080");
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "api.openai.com",
            "ftp://x",
            "http://",
            "http://h:0",
            "http://h:99999",
            "http://h/?q=1",
            "http://u:p@h",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
