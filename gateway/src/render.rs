//! Rendering Envoy's v3 bootstrap from a validated config.
//!
//! Envoy does what it is good at — listener, routing by prefix, clusters with TLS, retries,
//! timeouts, CORS, access logs, stats — and the wasm filter adds LLM semantics. Everything here is
//! a pure function of the config and [`RenderOptions`], so `render` output is reproducible and the
//! examples in `envoy/` are checked against it by a test.

use llm_forward_core::config::{FilterConfig, Route, ValidConfig};
use serde_json::{json, Value};

/// Machine-specific inputs that are not part of the config file.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// Path of `llm_forward_filter.wasm` as Envoy should open it.
    pub wasm_path: String,
    /// Folder for the access log (Envoy resolves relative paths against its working folder).
    pub log_dir: String,
    /// CA bundle used to verify `https` upstreams.
    pub ca_bundle: String,
}

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
    if millis % 1000 == 0 {
        format!("{}s", millis / 1000)
    } else {
        format!("{}.{:03}s", millis / 1000, millis % 1000)
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

fn wasm_filter(config: &ValidConfig, options: &RenderOptions) -> Value {
    let plugin = serde_json::to_string(&FilterConfig::from_valid(config)).unwrap_or_default();
    json!({
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
    })
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
        routes.extend(envoy_routes(r));
    }
    let clusters: Vec<Value> = config
        .routes
        .iter()
        .map(|r| cluster(r, options, server.buffer_limit_bytes))
        .collect();
    json!({
        "node": {"id": "llm-forward", "cluster": "llm-forward"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": server.admin_port}}},
        "stats_config": {"stats_tags": [
            {"tag_name": "route", "regex": "^wasmcustom\\.llm_forward\\.route\\.((.+?)\\.)"},
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

fn http_connection_manager(
    config: &ValidConfig,
    options: &RenderOptions,
    routes: Vec<Value>,
) -> Value {
    let cors_policy = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": [{"safe_regex": {"regex": ".*"}}],
        "allow_methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS, HEAD",
        "allow_headers": "*",
        "expose_headers": "*",
        "allow_credentials": true,
        "max_age": "600",
    });
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "llm_forward",
        "codec_type": "AUTO",
        "normalize_path": true,
        "merge_slashes": true,
        "use_remote_address": true,
        "xff_num_trusted_hops": config.raw.server.xff_num_trusted_hops,
        "access_log": access_log(options),
        "local_reply_config": local_reply_config(),
        "route_config": {
            "name": "llm_forward",
            "virtual_hosts": [{
                "name": "llm_forward",
                "domains": ["*"],
                "routes": routes,
                "typed_per_filter_config": {"envoy.filters.http.cors": cors_policy},
            }],
        },
        "http_filters": [
            {"name": "envoy.filters.http.cors", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
            wasm_filter(config, options),
            {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
        ],
    })
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
}
