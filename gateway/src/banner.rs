//! The startup banner: what is being served, never which secrets.

use crate::http_server::ListenAddr;
use llm_forward_core::config::{RouteKind, ValidConfig};
use std::fmt::Write;

/// Where the gateway's own services listen (as rendered into Envoy's config).
#[derive(Debug, Clone)]
pub struct Internal {
    pub admin: ListenAddr,
    pub cache: ListenAddr,
}

impl Internal {
    /// What `llm-forward render` writes for `config`.
    pub fn rendered(config: &ValidConfig) -> Internal {
        let options = crate::render::RenderOptions::default();
        Internal {
            admin: crate::render::admin_address(config, &options),
            cache: crate::render::cache_address(config, &options),
        }
    }
}

pub fn banner(
    config: &ValidConfig,
    version: &str,
    access_log: &str,
    internal: &Internal,
    demo: bool,
) -> String {
    let server = &config.raw.server;
    let host = if server.address == "0.0.0.0" {
        "localhost".to_string()
    } else {
        server.address.clone()
    };
    let mut rows: Vec<(String, String)> = Vec::new();
    for r in &config.routes {
        let kind = match r.kind {
            RouteKind::Openai => "openai",
            RouteKind::General => "general",
        };
        rows.push((
            "route".into(),
            format!("{:<12} → {} ({kind})", r.prefix, r.upstream),
        ));
    }
    rows.push(("timeouts".into(), summarize_timeouts(config)));
    // How many keys, never which.
    let keys = &config.raw.keys;
    if !keys.is_empty() {
        // What a client without one of the forward keys gets.
        // Without forward keys the filter authenticates nobody and swaps no key: requests pass
        // unchanged, whatever upstream keys are configured.
        let others = if keys.forward.is_empty() {
            if keys.upstream.is_empty() {
                "clients' own keys pass through"
            } else {
                "clients' own keys pass through (upstream keys are used only with forward keys)"
            }
        } else if config
            .raw
            .routes
            .iter()
            .all(|r| r.pass_through_unknown_keys)
        {
            "unknown keys pass through"
        } else {
            "unknown keys get 401"
        };
        rows.push((
            "keys".into(),
            format!(
                "{} upstream, {} forward, {} restricted level(s); {others}",
                keys.upstream.len(),
                keys.forward.len(),
                keys.levels.len()
            ),
        ));
    }
    let ip = &config.raw.ip;
    if !ip.is_empty() {
        rows.push((
            "ip lists".into(),
            format!(
                "allow {} entr(ies), deny {}; client address per xff_num_trusted_hops = {}",
                ip.allow.len(),
                ip.deny.len(),
                server.xff_num_trusted_hops
            ),
        ));
    }
    let limits = &config.raw.limits;
    if !limits.requests.is_empty()
        || !limits.global.is_unlimited()
        || !limits.tokens.is_empty()
        || !limits.pacing.is_empty()
    {
        rows.push((
            "limits".into(),
            format!(
                "{}, {} request rule(s), global {}, {} token quota(s), {} pacing rule(s)",
                limits.strategy,
                limits.requests.len(),
                limits.global,
                limits.tokens.len(),
                limits.pacing.len()
            ),
        ));
        rows.push(("limits counted".into(), limits_counted(limits)));
    }
    let cache = &config.raw.cache;
    rows.push((
        "cache".into(),
        if cache.enabled() {
            format!(
                "{} on {}, ttl {}s",
                format!("{:?}", cache.backend).to_lowercase(),
                internal.cache,
                cache.ttl_seconds
            )
        } else {
            "off".into()
        },
    ));
    rows.push((
        "chat logs".into(),
        if config.raw.logging.chat {
            format!("on, in {}/<route>/chat.log", config.raw.log_dir)
        } else {
            "off".into()
        },
    ));
    rows.push((
        "admin".into(),
        match &internal.admin {
            ListenAddr::Tcp(a) => {
                format!("http://{a} (stats, ready; reachable by every local user)")
            }
            ListenAddr::Unix(p) => format!("unix:{} (curl --unix-socket)", p.display()),
        },
    ));
    rows.push(("access log".into(), access_log.to_string()));
    if demo {
        rows.push((
            "demo".into(),
            "built-in mock upstream; no real API is called".into(),
        ));
    }
    let title = format!(
        " llm-forward {version} is ready to serve on http://{host}:{} ",
        server.port
    );
    let lines: Vec<String> = rows.iter().map(|(k, v)| format!("  {k:<11} {v}")).collect();
    // Every row is `│` + line + padding + ` │`; the borders are as wide as the widest row.
    let width = lines
        .iter()
        .map(|l| l.chars().count() + 3)
        .chain([title.chars().count() + 4])
        .max()
        .unwrap_or(60);
    let mut out = String::new();
    let pad = width.saturating_sub(title.chars().count() + 2);
    let _ = writeln!(
        out,
        "╭{}{}{}╮",
        "─".repeat(pad / 2),
        title,
        "─".repeat(pad - pad / 2)
    );
    for line in lines {
        let fill = width.saturating_sub(line.chars().count() + 3);
        let _ = writeln!(out, "│{line}{} │", " ".repeat(fill));
    }
    let _ = writeln!(out, "╰{}╯", "─".repeat(width.saturating_sub(2)));
    out
}

fn summarize_timeouts(config: &ValidConfig) -> String {
    match config.routes.first() {
        Some(r) => format!(
            "connect {}s, total {}s, stream idle {}s, retries {}",
            r.connect_timeout, r.timeout, r.stream_idle_timeout, r.retries
        ),
        None => String::new(),
    }
}

/// Where limits are counted: per gateway, or fleet-wide (never the Redis password).
fn limits_counted(limits: &llm_forward_core::limits::config::LimitsConfig) -> String {
    let how = format!(
        "domain {}, timeout {} ms, failure mode {}",
        limits.domain,
        limits.timeout_ms,
        if limits.failure_mode.is_open() {
            "open"
        } else {
            "closed"
        }
    );
    match (&limits.backend, &limits.service) {
        (Some(url), _) => format!(
            "fleet-wide: built-in rate-limit service on Redis {}, {how}",
            crate::redis_client::redact(url)
        ),
        (None, Some(service)) => format!("fleet-wide: rate-limit service {service}, {how}"),
        (None, None) => "per gateway (this Envoy's shared data)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_forward_core::config::Config;

    #[test]
    fn banner_lists_routes_and_ports() {
        let c = Config::default().validate().unwrap();
        let b = banner(
            &c,
            "0.1.0",
            "Log/access.log",
            &Internal::rendered(&c),
            false,
        );
        assert!(b.contains("http://localhost:8000"), "{b}");
        assert!(b.contains("https://api.openai.com (openai)"), "{b}");
        assert!(b.contains("127.0.0.1:8001"), "{b}");
    }

    #[test]
    fn banner_summarises_keys_limits_cache_and_logs_without_secrets() {
        let c = crate::config_file::parse_yaml(
            "keys:\n  upstream:\n    - key: sk-secret-value-1\n      levels: [0]\n  forward:\n    - name: alice\n      key: fk-secret-alice\n      level: 0\nlimits:\n  requests:\n    - path: /v1/chat/completions\n      limit: 5/minute\n      per: key\ncache:\n  openai: true\nlogging:\n  chat: true\n",
        )
        .unwrap()
        .validate()
        .unwrap();
        let b = banner(
            &c,
            "0.1.0",
            "Log/access.log",
            &Internal::rendered(&c),
            false,
        );
        assert!(b.contains("1 upstream, 1 forward"), "{b}");
        assert!(b.contains("unknown keys get 401"), "{b}");
        assert!(b.contains("1 request rule(s)"), "{b}");
        assert!(b.contains("memory on 127.0.0.1:8002"), "{b}");
        assert!(b.contains("chat logs   on"), "{b}");
        assert!(!b.contains("secret"), "{b}");
        assert!(b.contains("per gateway (this Envoy's shared data)"), "{b}");
    }

    #[test]
    fn banner_says_limits_are_fleet_wide_without_the_redis_password() {
        let c = crate::config_file::parse_yaml(
            "limits:\n  backend: redis://:hunter2@redis:6379/0\n  failure_mode: closed\n  requests:\n    - path: /v1\n      limit: 5/minute\n",
        )
        .unwrap()
        .validate()
        .unwrap();
        let b = banner(
            &c,
            "0.1.0",
            "Log/access.log",
            &Internal::rendered(&c),
            false,
        );
        assert!(
            b.contains("fleet-wide: built-in rate-limit service on Redis redis://***@redis:6379/0"),
            "{b}"
        );
        assert!(b.contains("failure mode closed"), "{b}");
        assert!(!b.contains("hunter2"), "{b}");
    }

    #[test]
    fn banner_says_what_clients_without_a_forward_key_get() {
        let with = |yaml: &str| {
            let c = crate::config_file::parse_yaml(yaml)
                .unwrap()
                .validate()
                .unwrap();
            banner(
                &c,
                "0.1.0",
                "Log/access.log",
                &Internal::rendered(&c),
                false,
            )
        };
        // The filter swaps keys only for clients presenting a forward key; without forward keys
        // every request passes unchanged (it used to claim "every request gets an upstream key").
        let b = with("keys:\n  upstream:\n    - key: sk-1\n      levels: [0]\n");
        assert!(
            b.contains(
                "clients' own keys pass through (upstream keys are used only with forward keys)"
            ),
            "{b}"
        );
        assert!(!b.contains("every request gets"), "{b}");
        let b = with("keys:\n  levels:\n    1: [gpt-4o]\n");
        assert!(b.contains("clients' own keys pass through"), "{b}");
        let b = with("routes:\n  - route: /\n    base_url: https://api.openai.com\n    pass_through_unknown_keys: true\nkeys:\n  forward:\n    - key: fk-1\n      level: 0\n");
        assert!(b.contains("unknown keys pass through"), "{b}");
    }

    #[test]
    fn every_banner_line_is_as_wide_as_the_box() {
        let c = Config::default().validate().unwrap();
        let internal = Internal {
            admin: ListenAddr::Unix("/tmp/llm-forward-abc123/admin.sock".into()),
            cache: ListenAddr::Unix("/tmp/llm-forward-abc123/cache.sock".into()),
        };
        let b = banner(
            &c,
            "0.1.0",
            "/a/very/long/path/to/Log/access.log",
            &internal,
            true,
        );
        assert!(b.contains("unix:/tmp/llm-forward-abc123/admin.sock"), "{b}");
        let widths: Vec<usize> = b.lines().map(|l| l.chars().count()).collect();
        assert!(widths.len() > 3);
        assert!(widths.iter().all(|w| *w == widths[0]), "{b}");
    }
}
