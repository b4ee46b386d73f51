//! The startup banner: what is being served, never which secrets.

use llm_forward_core::config::{RouteKind, ValidConfig};
use std::fmt::Write;

pub fn banner(config: &ValidConfig, version: &str, access_log: &str, demo: bool) -> String {
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
        rows.push((
            "keys".into(),
            format!(
                "{} upstream, {} forward, {} restricted level(s); unknown keys get 401",
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
    rows.push((
        "admin".into(),
        format!("http://127.0.0.1:{} (stats, ready)", server.admin_port),
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
    let width = rows
        .iter()
        .map(|(k, v)| k.chars().count() + v.chars().count() + 6)
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
    for (k, v) in rows {
        let line = format!("  {k:<11} {v}");
        let fill = width.saturating_sub(line.chars().count() + 2);
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

#[cfg(test)]
mod tests {
    use super::*;
    use llm_forward_core::config::Config;

    #[test]
    fn banner_lists_routes_and_ports() {
        let b = banner(
            &Config::default().validate().unwrap(),
            "0.1.0",
            "Log/access.log",
            false,
        );
        assert!(b.contains("http://localhost:8000"), "{b}");
        assert!(b.contains("https://api.openai.com (openai)"), "{b}");
        assert!(b.contains("127.0.0.1:8001"), "{b}");
    }
}
