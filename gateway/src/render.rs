//! Rendering Envoy's v3 bootstrap from a validated config.
//!
//! Envoy does what it is good at — listener, routing by prefix, clusters with TLS, retries,
//! timeouts, CORS, access logs, stats — and the wasm filter adds LLM semantics. Everything here is
//! a pure function of the config and [`RenderOptions`], so `render` output is reproducible and the
//! examples in `envoy/` are checked against it by a test.

pub mod cli;

use crate::http_server::ListenAddr;
use llm_forward_core::config::{FilterConfig, Route, RouteKind, ValidConfig};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Machine-specific inputs that are not part of the config file.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Path of `llm_forward_filter.wasm` as Envoy should open it.
    pub wasm_path: String,
    /// Folder for the access log (Envoy resolves relative paths against its working folder).
    pub log_dir: String,
    /// CA bundle used to verify `https` upstreams.
    pub ca_bundle: String,
    /// Unix socket for Envoy's admin (`run`: in its private runtime folder). `None`, or an explicit
    /// `server.admin_port`: 127.0.0.1 TCP.
    pub admin_socket: Option<PathBuf>,
    /// Unix socket of the cache service (`run`). `None`: 127.0.0.1:`cache.port`.
    pub cache_socket: Option<PathBuf>,
    /// Where the built-in rate-limit service listens (`limits.backend`): `host:port` or
    /// `unix:/path` (an Envoy `pipe` address). `run` picks it; `None` renders
    /// [`DEFAULT_RATELIMIT_ADDRESS`] (where `llm-forward ratelimit` listens by default).
    pub ratelimit_address: Option<String>,
}

/// The admin port `render` writes when the config names none.
pub const DEFAULT_ADMIN_PORT: u16 = 8001;

/// Where Envoy's admin listens for this config and these options.
pub fn admin_address(config: &ValidConfig, options: &RenderOptions) -> ListenAddr {
    match (config.raw.server.admin_port, &options.admin_socket) {
        (None, Some(path)) => ListenAddr::Unix(path.clone()),
        (port, _) => ListenAddr::Tcp(SocketAddr::from((
            [127, 0, 0, 1],
            port.unwrap_or(DEFAULT_ADMIN_PORT),
        ))),
    }
}

/// Where the cache service listens for this config and these options.
pub fn cache_address(config: &ValidConfig, options: &RenderOptions) -> ListenAddr {
    match &options.cache_socket {
        Some(path) => ListenAddr::Unix(path.clone()),
        None => ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], config.raw.cache.port))),
    }
}

/// An Envoy `Address` to connect to: a socket address or a Unix socket (`pipe`).
fn envoy_address(addr: &ListenAddr) -> Value {
    match addr {
        ListenAddr::Tcp(a) => {
            json!({"socket_address": {"address": a.ip().to_string(), "port_value": a.port()}})
        }
        ListenAddr::Unix(p) => json!({"pipe": {"path": p.display().to_string()}}),
    }
}

/// An Envoy `Address` to listen on; a Unix socket is created owner-only.
fn envoy_listen_address(addr: &ListenAddr) -> Value {
    let mut v = envoy_address(addr);
    if let Some(pipe) = v.get_mut("pipe").and_then(Value::as_object_mut) {
        pipe.insert("mode".into(), json!(0o600));
    }
    v
}

/// The built-in rate-limit service's address when `render` is not told another one.
pub const DEFAULT_RATELIMIT_ADDRESS: &str = "127.0.0.1:8081";

/// CA bundle locations of common Linux distributions, first existing wins.
pub const CA_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

pub fn default_ca_bundle() -> String {
    CA_BUNDLES
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or(&CA_BUNDLES[0])
        .to_string()
}

fn seconds(value: f64) -> String {
    // Envoy durations are strings like "1.5s"; trim float noise.
    let millis = (value * 1000.0).round() as u64;
    let (whole, fraction) = (millis / 1000, millis % 1000);
    if fraction == 0 {
        format!("{whole}s")
    } else {
        format!("{whole}.{fraction:03}s")
    }
}

pub fn cluster_name(route: &Route) -> String {
    format!("route_{}", route.name)
}

/// Host header sent upstream: the base URL's host, with the port when it is not the default.
fn upstream_host(route: &Route) -> String {
    let u = &route.upstream;
    let default_port = if u.tls { 443 } else { 80 };
    let host = if u.host.contains(':') {
        format!("[{}]", u.host)
    } else {
        u.host.clone()
    };
    if u.port == default_port {
        host
    } else {
        format!("{host}:{}", u.port)
    }
}

fn route_action(route: &Route, prefix_rewrite: Option<String>) -> Value {
    let mut action = json!({
        "cluster": cluster_name(route),
        "timeout": seconds(route.timeout),
        "idle_timeout": seconds(route.stream_idle_timeout),
        "host_rewrite_literal": upstream_host(route),
        "retry_policy": {
            "retry_on": "connect-failure,reset,retriable-status-codes",
            "retriable_status_codes": [502, 503, 504],
            "num_retries": route.retries,
            "retry_back_off": {"base_interval": "0.2s", "max_interval": "2s"},
        },
    });
    if let (Some(rewrite), Some(obj)) = (prefix_rewrite, action.as_object_mut()) {
        obj.insert("prefix_rewrite".into(), Value::String(rewrite));
    }
    action
}

/// Envoy routes for one configured route. Segment safety comes from matching `P` exactly and
/// `P/` as a prefix, never `P` as a bare string prefix (`/gen` must not catch `/genx`).
fn envoy_routes(route: &Route) -> Vec<Value> {
    let base = &route.upstream.path; // "" or "/v1" (no trailing slash)
    let name = &route.name;
    if route.prefix == "/" {
        let rewrite = (!base.is_empty()).then(|| format!("{base}/"));
        return vec![
            json!({"name": name, "match": {"prefix": "/"}, "route": route_action(route, rewrite)}),
        ];
    }
    let exact_rewrite = if base.is_empty() {
        "/".to_string()
    } else {
        base.clone()
    };
    vec![
        json!({"name": format!("{name}_exact"), "match": {"path": route.prefix}, "route": route_action(route, Some(exact_rewrite))}),
        json!({"name": name, "match": {"prefix": format!("{}/", route.prefix)}, "route": route_action(route, Some(format!("{base}/")))}),
    ]
}

/// The cache service the filter calls (`dispatch_http_call` to [`CACHE_CLUSTER`]), when caching is
/// on. A short connect timeout: a cache that is down must cost a lookup little (it fails open).
fn cache_cluster(config: &ValidConfig, options: &RenderOptions) -> Option<Value> {
    use llm_forward_core::cache::CACHE_CLUSTER;
    let cache = &config.raw.cache;
    let address = envoy_address(&cache_address(config, options));
    cache.enabled().then(|| {
        json!({
            "name": CACHE_CLUSTER,
            "type": "STATIC",
            "connect_timeout": "0.250s",
            "circuit_breakers": {"thresholds": [{
                "max_connections": 100000, "max_pending_requests": 100000, "max_requests": 100000, "max_retries": 0,
            }]},
            "load_assignment": {
                "cluster_name": CACHE_CLUSTER,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
            },
        })
    })
}

/// An Envoy address from `host:port`, `[v6]:port` or `unix:/path` (a `pipe`).
fn envoy_address_text(address: &str) -> Value {
    if let Some(path) = address.strip_prefix("unix:") {
        return json!({"pipe": {"path": path}});
    }
    let (host, port) = address.rsplit_once(':').unwrap_or((address, "0"));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    json!({"socket_address": {"address": host, "port_value": port.parse::<u16>().unwrap_or(0)}})
}

/// The rate-limit service the filter calls with `dispatch_grpc_call` (fleet-wide limits): the
/// built-in one (`limits.backend`) or an external one (`limits.service`). gRPC needs HTTP/2.
fn ratelimit_cluster(config: &ValidConfig, options: &RenderOptions) -> Option<Value> {
    use llm_forward_core::limits::fleet::{parse_service_address, CLUSTER};
    let limits = &config.raw.limits;
    let (address, dns) = if let Some(service) = &limits.service {
        let (host, port) = parse_service_address(service)?;
        let dns = host.parse::<std::net::IpAddr>().is_err();
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        (format!("{host}:{port}"), dns)
    } else if limits.backend.is_some() {
        let address = options
            .ratelimit_address
            .clone()
            .unwrap_or_else(|| DEFAULT_RATELIMIT_ADDRESS.to_string());
        (address, false)
    } else {
        return None;
    };
    Some(json!({
        "name": CLUSTER,
        "type": if dns { "STRICT_DNS" } else { "STATIC" },
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "0.250s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            },
        },
        "circuit_breakers": {"thresholds": [{
            "max_connections": 100000, "max_pending_requests": 100000, "max_requests": 100000, "max_retries": 0,
        }]},
        "load_assignment": {
            "cluster_name": CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": envoy_address_text(&address)}}]}],
        },
    }))
}

/// One model-routing rule of a route, as a route of its own (same prefix, the rule's base URL).
pub struct ModelTarget {
    /// The rule's position in the route's `models`: the value of the target header.
    pub index: usize,
    /// `<route>_model_<index>`: its cluster is `route_<route>_model_<index>`.
    pub route: Route,
}

/// The model-routing targets of `route` (empty when it has no `models`).
pub fn model_targets(config: &ValidConfig, route: &Route) -> Vec<ModelTarget> {
    let Some(i) = config.routes.iter().position(|r| r.name == route.name) else {
        return Vec::new();
    };
    let Some(raw) = config.raw.routes.get(i) else {
        return Vec::new();
    };
    raw.models
        .iter()
        .enumerate()
        .filter_map(|(j, m)| {
            let upstream = llm_forward_core::url::BaseUrl::parse(&m.base_url).ok()?;
            Some(ModelTarget {
                index: j,
                route: Route {
                    name: format!("{}_model_{j}", route.name),
                    upstream,
                    ..route.clone()
                },
            })
        })
        .collect()
}

fn model_target_routes(target: &ModelTarget) -> Vec<Value> {
    let header = llm_forward_core::access::TARGET_HEADER;
    let mut routes = envoy_routes(&target.route);
    for r in &mut routes {
        if let Some(m) = r.get_mut("match").and_then(Value::as_object_mut) {
            m.insert(
                "headers".into(),
                json!([{"name": header, "string_match": {"exact": target.index.to_string()}}]),
            );
        }
        if let Some(obj) = r.as_object_mut() {
            obj.insert("request_headers_to_remove".into(), json!([header]));
        }
    }
    routes
}

fn cluster(route: &Route, options: &RenderOptions, buffer_limit: u32) -> Value {
    let u = &route.upstream;
    let is_ip = u.host.parse::<std::net::IpAddr>().is_ok();
    let mut cluster = json!({
        "name": cluster_name(route),
        "type": if is_ip { "STATIC" } else { "STRICT_DNS" },
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": seconds(route.connect_timeout),
        "per_connection_buffer_limit_bytes": buffer_limit,
        // LLM streams are long-lived: Envoy's default of 1024 concurrent requests per cluster is too low.
        "circuit_breakers": {"thresholds": [{
            "max_connections": 100000, "max_pending_requests": 100000, "max_requests": 100000, "max_retries": 1000,
        }]},
        "load_assignment": {
            "cluster_name": cluster_name(route),
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": u.host, "port_value": u.port,
            }}}}]}],
        },
    });
    if u.tls {
        if let Some(obj) = cluster.as_object_mut() {
            obj.insert(
                "transport_socket".into(),
                json!({
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                        "sni": u.host,
                        "common_tls_context": {
                            "validation_context": {
                                "trusted_ca": {"filename": options.ca_bundle},
                                "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": u.host}}],
                            },
                        },
                    },
                }),
            );
        }
    }
    cluster
}

/// JSON error bodies for replies Envoy itself produces (upstream down, timeout, no route, too large),
/// so every error a client sees from the gateway has OpenAI's shape.
fn local_reply_config() -> Value {
    fn mapper(filter: Value, message: &str, kind: &str, code: &str) -> Value {
        json!({
            "filter": filter,
            "body_format_override": {
                "json_format": {"error": {"message": message, "type": kind, "param": null, "code": code}},
                "content_type": "application/json",
            },
        })
    }
    let flags = |flags: &[&str]| json!({"response_flag_filter": {"flags": flags}});
    let status = |code: u32| json!({"status_code_filter": {"comparison": {"op": "EQ", "value": {"default_value": code, "runtime_key": format!("llm_forward.local_reply.{code}")}}}});
    json!({"mappers": [
        mapper(flags(&["UT"]), "The upstream did not answer in time: %LOCAL_REPLY_BODY%", "upstream_error", "upstream_timeout"),
        mapper(flags(&["UF", "UH", "URX", "UC", "UO", "UR", "NC", "DF", "UMSDR", "OM"]), "The upstream could not be reached: %LOCAL_REPLY_BODY%", "upstream_error", "upstream_unavailable"),
        mapper(flags(&["NR"]), "No route for this path", "invalid_request_error", "route_not_found"),
        mapper(status(413), "The request body is larger than the gateway accepts", "invalid_request_error", "request_too_large"),
    ]})
}

fn access_log(options: &RenderOptions) -> Value {
    json!([{
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": format!("{}/access.log", options.log_dir.trim_end_matches('/')),
            "log_format": {"json_format": {
                "time": "%START_TIME%",
                "method": "%REQ(:METHOD)%",
                // Without the query string: Gemini-style `?key=` secrets must not reach the log.
                "path": "%PATH(NQ)%",
                "status": "%RESPONSE_CODE%",
                "flags": "%RESPONSE_FLAGS%",
                "route": "%ROUTE_NAME%",
                "upstream": "%UPSTREAM_CLUSTER%",
                "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                "bytes_in": "%BYTES_RECEIVED%",
                "bytes_out": "%BYTES_SENT%",
                "duration_ms": "%DURATION%",
                "ttfb_ms": "%RESPONSE_DURATION%",
                "request_id": "%REQ(X-REQUEST-ID)%",
            }},
        },
    }])
}

/// Where a route's chat records go: `<log_dir>/<route>/chat.log`.
pub fn chat_log_path(log_dir: &str, route: &Route) -> String {
    format!("{}/{}/chat.log", log_dir.trim_end_matches('/'), route.name)
}

/// The chat log files the rendered config writes (empty when `logging.chat` is off).
pub fn chat_log_paths(config: &ValidConfig, log_dir: &str) -> Vec<std::path::PathBuf> {
    if !config.raw.logging.chat {
        return Vec::new();
    }
    config
        .routes
        .iter()
        .filter(|r| r.kind == RouteKind::Openai)
        .map(|r| std::path::PathBuf::from(chat_log_path(log_dir, r)))
        .collect()
}

/// Envoy opens access log files at startup and does not create folders: create them first.
pub fn create_log_dirs(config: &ValidConfig, log_dir: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(log_dir)?;
    for path in chat_log_paths(config, log_dir) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
    }
    Ok(())
}

/// One file access logger per `openai` route printing the filter's record for that route
/// (filter state `wasm.llm_forward_log.<route>`, set in the filter's `on_log`). The CEL filter
/// skips requests without a record, so the file holds exactly one JSON line per logged exchange.
fn chat_access_logs(config: &ValidConfig, options: &RenderOptions) -> Vec<Value> {
    if !config.raw.logging.chat {
        return Vec::new();
    }
    config
        .routes
        .iter()
        .filter(|r| r.kind == RouteKind::Openai)
        .map(|r| {
            let key = format!("wasm.llm_forward_log.{}", r.name);
            json!({
                "name": "envoy.access_loggers.file",
                "filter": {"extension_filter": {
                    "name": "envoy.access_loggers.extension_filters.cel",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                        "expression": format!("'{key}' in filter_state"),
                    },
                }},
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": chat_log_path(&options.log_dir, r),
                    "log_format": {"text_format_source": {"inline_string": format!("%FILTER_STATE({key}:PLAIN)%\n")}},
                },
            })
        })
        .collect()
}

fn wasm_filter(config: &ValidConfig, options: &RenderOptions) -> Value {
    let plugin = serde_json::to_string(&FilterConfig::from_valid(config)).unwrap_or_default();
    let mut filter = json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "llm_forward",
                "root_id": "llm_forward",
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": plugin},
                // A trapped VM is replaced instead of failing every later request on that worker.
                "failure_policy": "FAIL_RELOAD",
                // Lets the filter hold a request in on_http_request_headers while it reads the body.
                "allow_on_headers_stop_iteration": true,
                "vm_config": {
                    "vm_id": "llm_forward",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": options.wasm_path}},
                },
            },
        },
    });
    // `${VAR}` keys stay references in the plugin config: Envoy hands these variables to the VM
    // (WASI environ) and the filter reads them at configure time, so no key is rendered.
    let secret_vars: Vec<String> = llm_forward_core::access::secret_env_vars(&config.raw)
        .into_iter()
        .map(|(var, _)| var)
        .collect();
    if !secret_vars.is_empty() {
        if let Some(vm) = filter
            .pointer_mut("/typed_config/config/vm_config")
            .and_then(Value::as_object_mut)
        {
            vm.insert(
                "environment_variables".into(),
                json!({"host_env_keys": secret_vars}),
            );
        }
    }
    filter
}

/// The whole bootstrap as a JSON value (YAML is produced from it by [`to_yaml`]).
pub fn bootstrap(config: &ValidConfig, options: &RenderOptions) -> Value {
    let server = &config.raw.server;
    let mut routes = vec![json!({
        "name": "healthz",
        "match": {"path": "/healthz", "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
        "direct_response": {"status": 200, "body": {"inline_string": "\"OK\""}},
        "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"}}],
        "typed_per_filter_config": {"envoy.filters.http.wasm": {
            "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": true,
        }},
    })];
    // Most specific prefix first; Envoy takes the first match.
    let mut ordered: Vec<&Route> = config.routes.iter().collect();
    ordered.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    for r in &ordered {
        // Model routing: the filter sets the target header after reading the body; these routes
        // match it before the route's normal ones.
        routes.extend(
            model_targets(config, r)
                .iter()
                .flat_map(model_target_routes),
        );
        routes.extend(envoy_routes(r));
    }
    let mut clusters: Vec<Value> = config
        .routes
        .iter()
        .map(|r| cluster(r, options, server.buffer_limit_bytes))
        .collect();
    clusters.extend(cache_cluster(config, options));
    clusters.extend(ratelimit_cluster(config, options));
    for r in &config.routes {
        for t in model_targets(config, r) {
            clusters.push(cluster(&t.route, options, server.buffer_limit_bytes));
        }
    }
    json!({
        "node": {"id": "llm-forward", "cluster": "llm-forward"},
        "admin": {"address": envoy_listen_address(&admin_address(config, options))},
        "stats_config": {"stats_tags": [
            // `route.<route>.…` and `usage.<route>.<model>.<level>.…` (chat logs feature; model
            // names have `.` and other non-label characters replaced by `_`).
            // `limited.<route>.<requests|tokens>` (rate limits and token quotas) too.
            {"tag_name": "route", "regex": "^wasmcustom\\.llm_forward\\.(?:route|usage|limited)\\.(([^.]+)\\.)"},
            {"tag_name": "limit_kind", "regex": "^wasmcustom\\.llm_forward\\.limited\\.[^.]+(\\.(requests|tokens))$"},
            {"tag_name": "model", "regex": "^wasmcustom\\.llm_forward\\.usage\\.[^.]+\\.(([^.]+)\\.)"},
            {"tag_name": "level", "regex": "^wasmcustom\\.llm_forward\\.usage\\.[^.]+\\.[^.]+\\.(([^.]+)\\.)"},
            {"tag_name": "status", "regex": "^wasmcustom\\.llm_forward\\.local_reply\\.((\\d+)\\.)"},
        ]},
        "static_resources": {
            "listeners": [{
                "name": "llm_forward",
                "address": {"socket_address": {"address": server.address, "port_value": server.port}},
                "per_connection_buffer_limit_bytes": server.buffer_limit_bytes,
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": http_connection_manager(config, options, routes),
                }]}],
            }],
            "clusters": clusters,
        },
    })
}

/// Envoy's CORS policy for `server.cors`; `None` (no CORS headers at all) when no origin is listed.
/// Credentials are only ever allowed for listed origins (validation refuses them with `*`).
fn cors_policy(cors: &llm_forward_core::config::CorsConfig) -> Option<Value> {
    if cors.allow_origins.is_empty() {
        return None;
    }
    let origins: Vec<Value> = cors
        .allow_origins
        .iter()
        .map(|o| {
            if o == "*" {
                json!({"safe_regex": {"regex": ".*"}})
            } else {
                json!({"exact": o})
            }
        })
        .collect();
    let any = cors.allow_origins.iter().any(|o| o == "*");
    Some(json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": origins,
        "allow_methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS, HEAD",
        "allow_headers": "*",
        "expose_headers": "*",
        "allow_credentials": cors.allow_credentials && !any,
        "max_age": "600",
    }))
}

fn http_connection_manager(
    config: &ValidConfig,
    options: &RenderOptions,
    routes: Vec<Value>,
) -> Value {
    let cors_policy = cors_policy(&config.raw.server.cors);
    let mut access_logs = access_log(options);
    if let Value::Array(list) = &mut access_logs {
        list.extend(chat_access_logs(config, options));
    }
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "llm_forward",
        "codec_type": "AUTO",
        "normalize_path": true,
        "merge_slashes": true,
        "use_remote_address": true,
        "xff_num_trusted_hops": config.raw.server.xff_num_trusted_hops,
        "access_log": access_logs,
        "local_reply_config": local_reply_config(),
        "route_config": {
            "name": "llm_forward",
            "virtual_hosts": [{
                "name": "llm_forward",
                "domains": ["*"],
                "routes": routes,
                "typed_per_filter_config": cors_policy.map(|p| json!({"envoy.filters.http.cors": p})).unwrap_or_else(|| json!({})),
            }],
        },
        "http_filters": [
            {"name": "envoy.filters.http.cors", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
            wasm_filter(config, options),
            {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
        ],
    })
}

/// Remove the llm-forward filter from a rendered bootstrap: the same listener, routes and clusters as
/// plain Envoy, the baseline that benchmarks compare against.
pub fn without_filter(bootstrap: &mut Value) {
    let filters = bootstrap
        .pointer_mut(
            "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters",
        )
        .and_then(|f| f.as_array_mut());
    if let Some(filters) = filters {
        filters.retain(|f| f["name"] != "envoy.filters.http.wasm");
    }
    // Routes may disable the filter per route; without the filter that reference is an error.
    let vhosts = bootstrap.pointer_mut(
        "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/route_config/virtual_hosts",
    );
    if let Some(Value::Array(vhosts)) = vhosts {
        for vh in vhosts {
            if let Some(Value::Array(routes)) = vh.get_mut("routes") {
                for r in routes {
                    if let Some(Value::Object(per_filter)) = r.get_mut("typed_per_filter_config") {
                        per_filter.remove("envoy.filters.http.wasm");
                    }
                }
            }
        }
    }
}

/// Render as YAML with a header comment saying where it came from.
pub fn to_yaml(bootstrap: &Value) -> String {
    let body = serde_yaml::to_string(bootstrap).unwrap_or_default();
    format!("# Rendered by `llm-forward render`; edit llm-forward.yaml and render again instead of editing this.\n{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_forward_core::config::{Config, RouteConfig, RouteKind};

    fn options() -> RenderOptions {
        RenderOptions {
            wasm_path: "/x.wasm".into(),
            log_dir: "/logs".into(),
            ca_bundle: CA_BUNDLES[0].into(),
            ..Default::default()
        }
    }

    fn render(config: Config) -> Value {
        bootstrap(&config.validate().unwrap(), &options())
    }

    fn routes(v: &Value) -> Vec<Value> {
        v.pointer("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/route_config/virtual_hosts/0/routes")
            .and_then(|r| r.as_array())
            .cloned()
            .unwrap()
    }

    #[test]
    fn cache_cluster_follows_the_cache_switches() {
        let mut c = Config::default();
        c.cache.port = 9123;
        c.cache.openai = true;
        let v = render(c.clone());
        let clusters = v["static_resources"]["clusters"].as_array().unwrap();
        let cache = clusters
            .iter()
            .find(|c| c["name"] == "llm_forward_cache")
            .unwrap();
        assert_eq!(
            cache["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["socket_address"]["port_value"],
            9123
        );
        c.cache.openai = false;
        let v = render(c);
        let clusters = v["static_resources"]["clusters"].as_array().unwrap();
        assert!(clusters.iter().all(|c| c["name"] != "llm_forward_cache"));
    }

    fn ratelimit_cluster_of(v: &Value) -> Option<Value> {
        v["static_resources"]["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "llm_forward_ratelimit")
            .cloned()
    }

    fn plugin_config(v: &Value) -> Value {
        let text = v.pointer("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters/1/typed_config/config/configuration/value")
            .and_then(Value::as_str)
            .unwrap();
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn ratelimit_cluster_and_filter_settings_follow_limits() {
        let mut c = Config::default();
        c.limits
            .requests
            .push(llm_forward_core::limits::config::LimitRule {
                path: "/v1".into(),
                limit: llm_forward_core::limits::parse_limit("10/minute").unwrap(),
                per: Default::default(),
                level: None,
            });
        // Per-gateway limits: no cluster, no settings.
        let v = render(c.clone());
        assert!(ratelimit_cluster_of(&v).is_none());
        assert!(plugin_config(&v).get("ratelimit").is_none());
        // Built-in service: HTTP/2 cluster at the address `run` picked; the Redis URL (and its
        // password) stays out of Envoy's config.
        c.limits.backend = Some("redis://:hunter2@127.0.0.1:6379".into());
        c.limits.failure_mode = llm_forward_core::limits::fleet::FailureMode::Closed;
        let mut o = options();
        o.ratelimit_address = Some("127.0.0.1:40123".into());
        let v = bootstrap(&c.clone().validate().unwrap(), &o);
        let cluster = ratelimit_cluster_of(&v).unwrap();
        assert_eq!(
            cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["socket_address"]["port_value"],
            40123
        );
        assert!(cluster.to_string().contains("http2_protocol_options"));
        assert!(!v.to_string().contains("hunter2"));
        let settings = &plugin_config(&v)["ratelimit"];
        assert_eq!(settings["cluster"], "llm_forward_ratelimit");
        assert_eq!(settings["domain"], "llm-forward");
        assert_eq!(settings["timeout_ms"], 20);
        assert_eq!(settings["failure_mode"], "closed");
        assert_eq!(settings["builtin"], true);
        // A Unix socket becomes a pipe address.
        o.ratelimit_address = Some("unix:/run/x/rls.sock".into());
        let v = bootstrap(&c.clone().validate().unwrap(), &o);
        assert_eq!(
            ratelimit_cluster_of(&v).unwrap()["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
                ["endpoint"]["address"]["pipe"]["path"],
            "/run/x/rls.sock"
        );
        // External service by name: resolved by DNS; not built-in.
        c.limits.backend = None;
        c.limits.service = Some("grpc://ratelimit.infra:8081".into());
        let v = render(c);
        let cluster = ratelimit_cluster_of(&v).unwrap();
        assert_eq!(cluster["type"], "STRICT_DNS");
        assert_eq!(plugin_config(&v)["ratelimit"]["builtin"], false);
        assert!(plugin_config(&v)["limits"].get("service").is_none());
    }

    #[test]
    fn chat_logs_get_one_filtered_logger_per_openai_route() {
        let mut c = Config::default();
        c.routes.push(RouteConfig::new(
            "/gen",
            "http://127.0.0.1:9001",
            RouteKind::General,
        ));
        c.routes.push(RouteConfig::new(
            "/local",
            "http://127.0.0.1:9002",
            RouteKind::Openai,
        ));
        let logs_of = |v: &Value| {
            v.pointer(
                "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/access_log",
            )
            .and_then(|l| l.as_array())
            .cloned()
            .unwrap()
        };
        assert_eq!(logs_of(&render(c.clone())).len(), 1, "off by default");
        c.logging.chat = true;
        let v = render(c.clone());
        let logs = logs_of(&v);
        assert_eq!(logs.len(), 3, "access log + root + local");
        assert_eq!(logs[1]["typed_config"]["path"], "/logs/root/chat.log");
        assert_eq!(logs[2]["typed_config"]["path"], "/logs/local/chat.log");
        assert_eq!(
            logs[2]["typed_config"]["log_format"]["text_format_source"]["inline_string"],
            "%FILTER_STATE(wasm.llm_forward_log.local:PLAIN)%\n"
        );
        assert_eq!(
            logs[2]["filter"]["extension_filter"]["typed_config"]["expression"],
            "'wasm.llm_forward_log.local' in filter_state"
        );
        let valid = c.validate().unwrap();
        let paths = chat_log_paths(&valid, "/x/");
        assert_eq!(
            paths,
            vec![
                std::path::PathBuf::from("/x/root/chat.log"),
                std::path::PathBuf::from("/x/local/chat.log")
            ]
        );
    }

    #[test]
    fn durations_are_envoy_strings() {
        assert_eq!(seconds(600.0), "600s");
        assert_eq!(seconds(0.2), "0.200s");
        assert_eq!(seconds(0.0), "0s");
    }

    #[test]
    fn prefixes_are_segment_safe_and_most_specific_first() {
        let mut c = Config::default();
        c.routes[0].base_url = "http://127.0.0.1:9000".into();
        c.routes.push(RouteConfig::new(
            "/gen",
            "http://127.0.0.1:9001/base",
            RouteKind::General,
        ));
        let r = routes(&render(c));
        let matches: Vec<String> = r.iter().map(|x| x["match"].to_string()).collect();
        assert!(matches[0].contains("/healthz"));
        assert_eq!(r[1]["match"]["path"], "/gen");
        assert_eq!(r[1]["route"]["prefix_rewrite"], "/base");
        assert_eq!(r[2]["match"]["prefix"], "/gen/");
        assert_eq!(r[2]["route"]["prefix_rewrite"], "/base/");
        assert_eq!(r[3]["match"]["prefix"], "/");
        assert!(r[3]["route"].get("prefix_rewrite").is_none());
    }

    #[test]
    fn https_upstreams_get_tls_with_sni_and_verification() {
        let v = render(Config::default());
        let c = &v["static_resources"]["clusters"][0];
        assert_eq!(c["type"], "STRICT_DNS");
        let tls = &c["transport_socket"]["typed_config"];
        assert_eq!(tls["sni"], "api.openai.com");
        assert_eq!(
            tls["common_tls_context"]["validation_context"]["trusted_ca"]["filename"],
            CA_BUNDLES[0]
        );
        assert_eq!(
            c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["socket_address"]["port_value"],
            443
        );
    }

    #[test]
    fn plugin_config_is_the_filter_config_json() {
        let v = render(Config::default());
        let filters = v
            .pointer(
                "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters",
            )
            .unwrap();
        let wasm = &filters[1]["typed_config"]["config"];
        assert_eq!(wasm["failure_policy"], "FAIL_RELOAD");
        assert_eq!(wasm["allow_on_headers_stop_iteration"], true);
        let plugin = wasm["configuration"]["value"].as_str().unwrap();
        let parsed = FilterConfig::from_json(plugin.as_bytes()).unwrap();
        assert_eq!(parsed.routes[0].prefix, "/");
    }

    #[test]
    fn retries_and_timeouts_come_from_the_route() {
        let mut c = Config::default();
        c.routes[0].retries = 5;
        c.routes[0].timeout = 30.0;
        c.routes[0].connect_timeout = 2.5;
        let v = render(c);
        let action = &routes(&v)[1]["route"];
        assert_eq!(action["retry_policy"]["num_retries"], 5);
        assert_eq!(action["timeout"], "30s");
        assert_eq!(
            v["static_resources"]["clusters"][0]["connect_timeout"],
            "2.500s"
        );
    }

    #[test]
    fn model_targets_get_header_routes_before_the_route_and_their_own_clusters() {
        use llm_forward_core::access::ModelTargetConfig;
        let mut c = Config::default();
        c.routes[0].base_url = "http://127.0.0.1:9000".into();
        c.routes[0].models = vec![ModelTargetConfig {
            pattern: "qwen*".into(),
            base_url: "http://127.0.0.1:11434/v1".into(),
            rename: Some("qwen2:7b".into()),
        }];
        let v = render(c);
        let r = routes(&v);
        assert_eq!(r[1]["name"], "root_model_0");
        assert_eq!(r[1]["match"]["headers"][0]["name"], "x-llm-forward-target");
        assert_eq!(r[1]["match"]["headers"][0]["string_match"]["exact"], "0");
        assert_eq!(r[1]["route"]["cluster"], "route_root_model_0");
        assert_eq!(r[1]["route"]["prefix_rewrite"], "/v1/");
        assert_eq!(r[1]["request_headers_to_remove"][0], "x-llm-forward-target");
        assert_eq!(r[2]["name"], "root");
        assert!(r[2]["match"].get("headers").is_none());
        let clusters = v["static_resources"]["clusters"].as_array().unwrap();
        let target = clusters
            .iter()
            .find(|c| c["name"] == "route_root_model_0")
            .unwrap();
        assert_eq!(
            target["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["socket_address"]["port_value"],
            11434
        );
    }

    #[test]
    fn env_keys_are_references_passed_through_host_env_keys() {
        use llm_forward_core::access::{ForwardKeyConfig, UpstreamKeyConfig};
        let mut c = Config::default();
        c.keys.upstream = vec![
            UpstreamKeyConfig {
                key: Some("${OPENAI_KEY_1}".into()),
                file: None,
                levels: vec![0],
                routes: vec![],
            },
            UpstreamKeyConfig {
                key: None,
                file: Some("/run/secrets/k".into()),
                levels: vec![0],
                routes: vec![],
            },
        ];
        c.keys.forward = vec![ForwardKeyConfig {
            name: None,
            key: "fk-literal".into(),
            level: 0,
        }];
        let v = render(c);
        let vm = &v.pointer("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters/1/typed_config/config/vm_config").unwrap();
        assert_eq!(
            vm["environment_variables"]["host_env_keys"],
            json!(["OPENAI_KEY_1", "LLM_FORWARD_SECRET_0"])
        );
        let text = v.to_string();
        assert!(text.contains("${OPENAI_KEY_1}"));
        assert!(text.contains("${LLM_FORWARD_SECRET_0}"));
        assert!(!text.contains("/run/secrets"));
        // Without secrets the VM gets no environment.
        let plain = render(Config::default());
        assert!(plain.to_string().find("host_env_keys").is_none());
    }

    fn cors_of(v: &Value) -> Option<Value> {
        v.pointer("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/route_config/virtual_hosts/0/typed_per_filter_config/envoy.filters.http.cors")
            .cloned()
    }

    #[test]
    fn cors_allows_any_origin_without_credentials_by_default() {
        // It used to echo any origin with `allow_credentials: true`.
        let p = cors_of(&render(Config::default())).unwrap();
        assert_eq!(p["allow_credentials"], false);
        assert_eq!(
            p["allow_origin_string_match"][0]["safe_regex"]["regex"],
            ".*"
        );
    }

    #[test]
    fn cors_credentials_only_for_listed_origins_and_off_when_empty() {
        let mut c = Config::default();
        c.server.cors.allow_origins = vec!["https://app.example.com".into()];
        c.server.cors.allow_credentials = true;
        let p = cors_of(&render(c.clone())).unwrap();
        assert_eq!(p["allow_credentials"], true);
        assert_eq!(
            p["allow_origin_string_match"],
            json!([{"exact": "https://app.example.com"}])
        );
        c.server.cors.allow_origins = vec!["*".into()];
        let errors = c.clone().validate().unwrap_err();
        assert_eq!(errors[0].path, "server.cors.allow_credentials");
        c.server.cors.allow_origins = vec![];
        c.server.cors.allow_credentials = false;
        assert!(cors_of(&render(c.clone())).is_none());
        c.server.cors.allow_origins = vec!["app.example.com".into()];
        assert!(c.validate().is_err());
    }

    #[test]
    fn run_puts_admin_and_cache_on_unix_sockets_unless_a_port_is_asked_for() {
        let mut c = Config::default();
        c.cache.openai = true;
        let options = RenderOptions {
            admin_socket: Some("/run/x/admin.sock".into()),
            cache_socket: Some("/run/x/cache.sock".into()),
            ..options()
        };
        let v = bootstrap(&c.clone().validate().unwrap(), &options);
        assert_eq!(
            v["admin"]["address"],
            json!({"pipe": {"path": "/run/x/admin.sock", "mode": 0o600}})
        );
        let clusters = v["static_resources"]["clusters"].as_array().unwrap();
        let cache = clusters
            .iter()
            .find(|c| c["name"] == "llm_forward_cache")
            .unwrap();
        assert_eq!(
            cache["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"],
            json!({"pipe": {"path": "/run/x/cache.sock"}})
        );
        // An explicit admin port is TCP on loopback; `render` without sockets keeps 8001.
        c.server.admin_port = Some(9901);
        let v = bootstrap(&c.clone().validate().unwrap(), &options);
        assert_eq!(v["admin"]["address"]["socket_address"]["port_value"], 9901);
        assert_eq!(
            v["admin"]["address"]["socket_address"]["address"],
            "127.0.0.1"
        );
        c.server.admin_port = None;
        let v = render(c);
        assert_eq!(v["admin"]["address"]["socket_address"]["port_value"], 8001);
    }
}
