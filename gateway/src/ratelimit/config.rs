//! Optional `--config`: limits in envoyproxy/ratelimit's YAML format, for descriptors that carry no
//! `limit` override (Envoy's native `envoy.filters.http.ratelimit` sends none unless told to).
//! That makes the built-in service a drop-in for an envoyproxy/ratelimit config file:
//!
//! ```yaml
//! domain: edge
//! descriptors:
//!   - key: generic_key
//!     value: chat
//!     rate_limit: {unit: minute, requests_per_unit: 3}
//!   - key: remote_address          # no value: one counter per address
//!     rate_limit: {unit: second, requests_per_unit: 10}
//!     descriptors:                 # nested: matched against the next entry
//!       - key: path
//!         value: /v1/chat/completions
//!         rate_limit: {unit: minute, requests_per_unit: 60}
//! ```
//!
//! Matching follows envoyproxy/ratelimit: entry i of a request descriptor is looked up among the
//! nodes of level i, first by key and value, then by key alone; the limit of the node reached by
//! the last entry applies. `unlimited: true` means no limit. Other fields (`shadow_mode`,
//! `replaces`, `detailed_metric`, `name`) are accepted and ignored.

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct RlsConfig {
    pub domain: String,
    #[serde(default)]
    pub descriptors: Vec<Node>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Node {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    #[serde(default)]
    pub descriptors: Vec<Node>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RateLimit {
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub requests_per_unit: u32,
    #[serde(default)]
    pub unlimited: bool,
}

/// `second` / `MINUTE` … → the protobuf unit number.
fn unit_number(name: &str) -> Option<i32> {
    match name.to_ascii_uppercase().as_str() {
        "SECOND" => Some(1),
        "MINUTE" => Some(2),
        "HOUR" => Some(3),
        "DAY" => Some(4),
        "MONTH" => Some(5),
        "YEAR" => Some(6),
        "WEEK" => Some(7),
        _ => None,
    }
}

impl RlsConfig {
    /// Reads and checks a config file. Errors name the file and the problem.
    pub fn load(path: &std::path::Path) -> Result<RlsConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        RlsConfig::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<RlsConfig, String> {
        let config: RlsConfig = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        if config.domain.is_empty() {
            return Err("`domain` is empty".into());
        }
        fn check(nodes: &[Node], path: &str) -> Result<(), String> {
            for n in nodes {
                let here = format!("{path}/{}", n.key);
                if n.key.is_empty() {
                    return Err(format!("{path}: a descriptor has an empty key"));
                }
                if let Some(r) = &n.rate_limit {
                    if !r.unlimited {
                        match r.unit.as_deref().map(unit_number) {
                            Some(Some(_)) => {}
                            _ => return Err(format!("{here}: rate_limit.unit must be second, minute, hour, day, week, month or year")),
                        }
                    }
                }
                check(&n.descriptors, &here)?;
            }
            Ok(())
        }
        check(&config.descriptors, "descriptors")?;
        Ok(config)
    }

    /// The `(requests_per_unit, unit)` that applies to a request descriptor, if any.
    pub fn find(&self, domain: &str, entries: &[Entry]) -> Option<(u32, i32)> {
        if domain != self.domain {
            return None;
        }
        let mut level = &self.descriptors;
        let mut reached = None;
        for e in entries {
            let node = level
                .iter()
                .find(|n| n.key == e.key && n.value.as_deref() == Some(e.value.as_str()))
                .or_else(|| level.iter().find(|n| n.key == e.key && n.value.is_none()))?;
            reached = Some(node);
            level = &node.descriptors;
        }
        let limit = reached?.rate_limit.as_ref()?;
        if limit.unlimited {
            return None;
        }
        Some((
            limit.requests_per_unit,
            unit_number(limit.unit.as_deref()?)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(pairs: &[(&str, &str)]) -> Vec<Entry> {
        pairs
            .iter()
            .map(|(k, v)| Entry {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect()
    }

    #[test]
    fn matches_like_envoyproxy_ratelimit() {
        let c = RlsConfig::parse(
            "domain: edge\ndescriptors:\n  - key: generic_key\n    value: chat\n    rate_limit: {unit: minute, requests_per_unit: 3}\n  - key: remote_address\n    rate_limit: {unit: SECOND, requests_per_unit: 10}\n    descriptors:\n      - key: path\n        value: /a\n        rate_limit: {unit: hour, requests_per_unit: 60}\n  - key: free\n    rate_limit: {unlimited: true}\n",
        )
        .unwrap();
        assert_eq!(
            c.find("edge", &entries(&[("generic_key", "chat")])),
            Some((3, 2))
        );
        assert_eq!(c.find("other", &entries(&[("generic_key", "chat")])), None);
        assert_eq!(c.find("edge", &entries(&[("generic_key", "x")])), None);
        assert_eq!(
            c.find("edge", &entries(&[("remote_address", "1.2.3.4")])),
            Some((10, 1))
        );
        assert_eq!(
            c.find(
                "edge",
                &entries(&[("remote_address", "1.2.3.4"), ("path", "/a")])
            ),
            Some((60, 3))
        );
        assert_eq!(
            c.find(
                "edge",
                &entries(&[("remote_address", "1.2.3.4"), ("path", "/b")])
            ),
            None
        );
        assert_eq!(c.find("edge", &entries(&[("free", "x")])), None);
    }

    #[test]
    fn bad_files_are_refused_with_the_place() {
        let e = RlsConfig::parse("domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n")
            .unwrap_err();
        assert!(e.contains("descriptors/a"), "{e}");
        assert!(RlsConfig::parse("domain: ''\n").is_err());
        assert!(RlsConfig::parse("[").is_err());
    }
}
