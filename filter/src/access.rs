//! Access control glue: IP lists, forward key → upstream key swap, model permission, model routing
//! and upstream key cooldowns. The decisions live in [`llm_forward_core::access`]; this module
//! reads what they need from Envoy and applies their answer.
//!
//! Shared data (one store per `vm_id`, shared by every worker):
//! - `llm_forward.access.rr.<level>.<key indexes>`: one pool's rotation counter (8 bytes LE), then
//!   the cooldown table: until-ms per upstream key index (8 bytes LE each; absent = none cooling).
//!   Routes whose pools hold the same keys rotate together, like OpenAI-Forward's single rotation.
//!   A cooldown is written into every pool holding the key, so a pick reads its counter and the
//!   cooldowns in one host call (this runs on every keyed request).
//!
//! Values are written with CAS and a bounded number of retries; when they run out the request still
//! gets a key (the computed one) and `llm_forward.access.cas_exhausted_total` counts it.

use crate::exchange::{Caller, Exchange, LocalReply, Step};
use crate::host::{self, log};
use llm_forward_core::access::model_of::{self, ModelSource};
use llm_forward_core::access::{
    decode_cooldowns, decode_counter, encode_cooldowns, ends_with_ignore_case,
    is_json_content_type, is_key_failure, parse_body, pick_key, replace_query_param, Access,
    KeyDecision, KeyLocation, UpstreamKey,
};
use llm_forward_core::config::{ConfigError, FilterConfig, RouteKind};
use llm_forward_core::routing::route_path;
use proxy_wasm::types::{LogLevel, MetricType, Status};
use std::net::IpAddr;
use std::rc::Rc;

pub use llm_forward_core::access::TARGET_HEADER;

const MAX_CAS_TRIES: usize = 16;

#[derive(Debug, Default)]
struct AccessMetrics {
    cooldowns: Option<u32>,
    cas_exhausted: Option<u32>,
    ip_denied: Option<u32>,
    key_rejected: Option<u32>,
    model_denied: Option<u32>,
}

fn counter(name: &str) -> Option<u32> {
    host::define_metric(MetricType::Counter, name).ok()
}

fn bump(id: Option<u32>) {
    if let Some(id) = id {
        let _ = host::increment_metric(id, 1);
    }
}

/// The compiled rules and this worker's metric handles.
#[derive(Debug, Default)]
pub struct AccessState {
    pub rules: Access,
    metrics: AccessMetrics,
    /// Shared-data key of each `(route, level)` pool's rotation counter, built once.
    rotation_keys: std::collections::HashMap<(usize, u32), String>,
    /// Each forward key's name, shared with every `Caller` it identifies.
    names: Vec<Rc<str>>,
    /// The last `source.address` this worker parsed and its IP (clients reuse connections).
    peer: std::cell::RefCell<Option<(Vec<u8>, Option<IpAddr>)>>,
    /// The last request shape whose model source was worked out (asked up to three times per
    /// request, and clients repeat their paths).
    source_memo: std::cell::RefCell<Option<SourceMemo>>,
}

/// [`AccessState::model_source`]'s answer for one route, method and `:path` (it depends on nothing
/// else but the configuration, which lives as long as this memo).
#[derive(Debug)]
struct SourceMemo {
    route: usize,
    method: String,
    path: String,
    source: Option<ModelSource>,
}

impl AccessState {
    /// Compiles the access section, resolving `${VAR}` secrets from the VM's environment (Envoy
    /// passes the variables listed in `vm_config.environment_variables.host_env_keys`).
    pub fn configure(config: &FilterConfig) -> Result<AccessState, ConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        let rules = Access::compile(&config.access, config.routes.len(), &env)?;
        // Create the rotation counters up front so every later write can use CAS.
        let mut rotation_keys = std::collections::HashMap::new();
        for (route, level) in rules.pool_ids() {
            let key = rotation_key(&rules, route, level);
            if let Ok((None, _)) = host::get_shared_data(&key) {
                let _ = host::set_shared_data(&key, Some(&0u64.to_le_bytes()), None);
            }
            rotation_keys.insert((route, level), key);
        }
        let metrics = if rules.keys_required() || !rules.ip_open() || rules.upstream_count() > 0 {
            AccessMetrics {
                cooldowns: counter("llm_forward.upstream_key_cooldowns_total"),
                cas_exhausted: counter("llm_forward.access.cas_exhausted_total"),
                ip_denied: counter("llm_forward.access.ip_denied_total"),
                key_rejected: counter("llm_forward.access.key_rejected_total"),
                model_denied: counter("llm_forward.access.model_denied_total"),
            }
        } else {
            AccessMetrics::default()
        };
        let names = (0..)
            .map_while(|i| rules.forward_key(i))
            .map(|k| Rc::from(k.name.as_str()))
            .collect();
        Ok(AccessState {
            rules,
            metrics,
            rotation_keys,
            names,
            peer: std::cell::RefCell::new(None),
            source_memo: std::cell::RefCell::new(None),
        })
    }

    /// The downstream address Envoy computed (`source.address`, one host call), parsed; the last
    /// parse is remembered, so a client's repeated requests skip it.
    pub fn client_ip(&self) -> Option<IpAddr> {
        let address = host::get_property(vec!["source", "address"])
            .ok()
            .flatten()?;
        let Ok(mut memo) = self.peer.try_borrow_mut() else {
            return parse_address(&address);
        };
        if let Some((last, ip)) = memo.as_ref() {
            if *last == address {
                return *ip;
            }
        }
        let ip = parse_address(&address);
        *memo = Some((address, ip));
        ip
    }

    /// Headers phase: IP list, then the key. Sets `client_ip`, `caller` and `api`; an accepted
    /// forward key leaves `key_swap_pending` for [`AccessState::swap_key`].
    pub fn on_request_headers(&self, config: &FilterConfig, ex: &mut Exchange) -> Step {
        let rules = &self.rules;
        if !rules.ip_open() {
            let ip = self.client_ip();
            ex.client_ip = ip;
            let permitted = ip.is_some_and(|ip| rules.ip_permits(&ip));
            if !permitted {
                bump(self.metrics.ip_denied);
                let shown = ip
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "unknown".into());
                log(
                    LogLevel::Warn,
                    &format!("llm-forward: client IP {shown} is not allowed"),
                );
                return Step::Reply(LocalReply::new(
                    403,
                    "Your IP address is not allowed to use this gateway.",
                    "permission_error",
                    "ip_not_allowed",
                ));
            }
        }
        let route = config.routes.get(ex.route);
        if let Some(r) = route {
            let rel = route_path(&r.prefix, &ex.path);
            ex.api = rules.json_path(ex.route, r.kind, rel).and_then(|j| j.api);
        }
        if rules.routes_models(ex.route) && ex.request_header(TARGET_HEADER).is_some() {
            // Only the filter chooses model targets.
            host::set_request_header(TARGET_HEADER, None);
        }
        let Some(access) = rules.route(ex.route) else {
            return Step::Continue;
        };
        let presented = if rules.keys_required() {
            access.location.extract(&ex.request_headers, &ex.path)
        } else {
            None
        };
        match rules.authenticate(ex.route, presented.as_deref()) {
            KeyDecision::Open => {
                ex.caller = Some(Caller {
                    level: 0,
                    key_name: None,
                });
                Step::Continue
            }
            // Not authenticated by the gateway: `caller` stays None, the upstream decides.
            KeyDecision::PassThrough => Step::Continue,
            KeyDecision::Reject { missing } => {
                bump(self.metrics.key_rejected);
                let message = if missing {
                    "You didn't provide an API key. Send the key this gateway issued you (for OpenAI \
                     routes: `Authorization: Bearer <key>`)."
                } else {
                    "Incorrect API key provided. Use a key issued by this gateway."
                };
                Step::Reply(LocalReply::new(
                    401,
                    message,
                    "invalid_request_error",
                    "invalid_api_key",
                ))
            }
            KeyDecision::Forward(i) => {
                let Some(fk) = rules.forward_key(i) else {
                    return Step::Continue;
                };
                ex.caller = Some(Caller {
                    level: fk.level,
                    key_name: Some(match self.names.get(i) {
                        Some(name) => Rc::clone(name),
                        None => Rc::from(fk.name.as_str()),
                    }),
                });
                // The upstream key is chosen and written by `swap_key` once the request is
                // certain to go upstream: a cache hit or a local reply uses no key.
                ex.key_swap_pending = true;
                Step::Continue
            }
        }
    }

    /// Puts the next pooled upstream key in place of the forward key (or removes the forward key
    /// when the route and level have none). Called by the filter at every point where the request
    /// goes upstream; does nothing unless `on_request_headers` accepted a forward key.
    pub fn swap_key(&self, ex: &mut Exchange) {
        if !std::mem::take(&mut ex.key_swap_pending) {
            return;
        }
        let (Some(access), Some(caller)) = (self.rules.route(ex.route), ex.caller.as_ref()) else {
            return;
        };
        let chosen = self.next_upstream_key(ex.route, caller.level, ex.started_ms);
        ex.upstream_key = chosen;
        let key = chosen.and_then(|k| self.rules.upstream_key(k));
        // No upstream key for this route and level: the forward key is removed, so it never
        // reaches the upstream (a keyless local model, say).
        write_key(&access.location, &ex.path, key);
    }

    /// Whether the access checks need the body of this request: a model-bearing endpoint and a
    /// caller whose level restricts models (JSON or form bodies), or a JSON path on a route with
    /// model routing.
    pub fn needs_body(&self, config: &FilterConfig, ex: &Exchange) -> bool {
        let content_type = ex.request_header("content-type");
        if self.body_path(config, ex)
            && (self.restricted(ex) || self.rules.routes_models(ex.route))
            && is_json_content_type(content_type)
        {
            return true;
        }
        self.restricted(ex)
            && self.model_source(config, ex) == Some(ModelSource::Body)
            && is_model_readable_content_type(content_type)
    }

    /// Headers phase, for callers whose level restricts models: a model named in the path is
    /// checked now; a model-bearing request whose model cannot be determined (an unreadable
    /// path, no body, a body type that names no model) is refused, never forwarded.
    pub fn check_model_at_headers(
        &self,
        config: &FilterConfig,
        ex: &Exchange,
        end_of_stream: bool,
    ) -> Step {
        if !self.restricted(ex) {
            return Step::Continue;
        }
        let content_type = ex.request_header("content-type");
        if !end_of_stream && self.body_path(config, ex) && !is_json_content_type(content_type) {
            return Step::Reply(LocalReply::new(
                400,
                "This endpoint expects a JSON body (`content-type: application/json`).",
                "invalid_request_error",
                "unsupported_content_type",
            ));
        }
        let source = self.model_source(config, ex);
        let content_types =
            llm_forward_core::headers::HeaderLookup::count(&ex.request_headers, "content-type");
        if source.is_some() && content_types > 1 {
            // Which one the upstream reads is its choice; the body read here could be another.
            return self.undetermined("the request has two content-type headers");
        }
        match source {
            None => Step::Continue,
            Some(ModelSource::Named(model)) => self.check_model(ex, &model),
            Some(ModelSource::Unknown) => self.undetermined("the path does not name it plainly"),
            Some(ModelSource::Body) if end_of_stream => {
                self.undetermined("the request has no body")
            }
            Some(ModelSource::Body) if !is_model_readable_content_type(content_type) => {
                self.undetermined("the body's content-type is not JSON or a form")
            }
            Some(ModelSource::Body) => Step::Continue,
        }
    }

    /// Where the model of this request is: a model-bearing OpenAI endpoint or path form
    /// ([`model_of::model_source`]), or a checked JSON path (`model_paths` of general routes).
    fn model_source(&self, config: &FilterConfig, ex: &Exchange) -> Option<ModelSource> {
        if let Ok(memo) = self.source_memo.try_borrow() {
            if let Some(m) = memo.as_ref() {
                if m.route == ex.route && m.method == ex.method && m.path == ex.path {
                    return m.source.clone();
                }
            }
        }
        let source = self.find_model_source(config, ex);
        if let Ok(mut memo) = self.source_memo.try_borrow_mut() {
            // The strings' buffers are reused.
            let m = memo.get_or_insert_with(|| SourceMemo {
                route: 0,
                method: String::new(),
                path: String::new(),
                source: None,
            });
            m.route = ex.route;
            m.method.clear();
            m.method.push_str(&ex.method);
            m.path.clear();
            m.path.push_str(&ex.path);
            m.source.clone_from(&source);
        }
        source
    }

    fn find_model_source(&self, config: &FilterConfig, ex: &Exchange) -> Option<ModelSource> {
        let route = config.routes.get(ex.route)?;
        let rel = route_path(&route.prefix, &ex.path);
        let query = ex
            .path
            .split_once('?')
            .map(|(_, q)| q.split('#').next().unwrap_or(""));
        let openai = route.kind == RouteKind::Openai;
        match model_of::model_source(openai, &ex.method, rel, query) {
            Some(source) => Some(source),
            None if ex.method == "POST"
                && self.rules.json_path(ex.route, route.kind, rel).is_some() =>
            {
                Some(ModelSource::Body)
            }
            None => None,
        }
    }

    fn check_model(&self, ex: &Exchange, model: &str) -> Step {
        match &ex.caller {
            Some(caller) if !self.rules.model_allowed(caller.level, model) => {
                bump(self.metrics.model_denied);
                Step::Reply(LocalReply::new(
                    403,
                    format!("The model `{model}` is not allowed for this key."),
                    "invalid_request_error",
                    "model_not_allowed",
                ))
            }
            _ => Step::Continue,
        }
    }

    /// 403 for a restricted caller whose model could not be determined.
    fn undetermined(&self, why: &str) -> Step {
        bump(self.metrics.model_denied);
        Step::Reply(LocalReply::new(
            403,
            format!(
                "This key may only use some models, and the model of this request could not be \
                 determined ({why}). Name the model in the request's `model` field."
            ),
            "invalid_request_error",
            "model_not_allowed",
        ))
    }

    fn body_path(&self, config: &FilterConfig, ex: &Exchange) -> bool {
        config.routes.get(ex.route).is_some_and(|r| {
            self.rules
                .json_path(ex.route, r.kind, route_path(&r.prefix, &ex.path))
                .is_some()
        })
    }

    fn restricted(&self, ex: &Exchange) -> bool {
        ex.caller
            .as_ref()
            .is_some_and(|c| !self.rules.level_allows_all(c.level))
    }

    /// Body phase (whole body): parse once into `ex.body`, check the model, route it.
    pub fn on_request_body(&self, config: &FilterConfig, ex: &mut Exchange, bytes: &[u8]) -> Step {
        let checked =
            self.restricted(ex) && self.model_source(config, ex) == Some(ModelSource::Body);
        let content_type = ex.request_header("content-type");
        if !self.body_path(config, ex) || !is_json_content_type(content_type) {
            if !checked {
                // Another feature may have held a multipart body; it is not ours to parse.
                return Step::Continue;
            }
            // Model-bearing endpoints the filter does not otherwise read (responses, images,
            // audio uploads…): only the model is read, nothing is kept.
            return match model_of::body_model(content_type, bytes) {
                Ok(model) => self.check_model(ex, &model),
                Err(e) => self.undetermined(&e.to_string()),
            };
        }
        let body = match parse_body(bytes) {
            Ok(b) => b,
            Err(message) => {
                return Step::Reply(LocalReply::new(
                    400,
                    message,
                    "invalid_request_error",
                    "invalid_json",
                ))
            }
        };
        ex.model = body.model;
        ex.stream = body.stream;
        ex.body = Some(body.json);
        let Some(model) = ex.model.as_deref() else {
            if checked {
                return self.undetermined(&model_of::ModelError::Missing.to_string());
            }
            return Step::Continue;
        };
        if let Some(caller) = &ex.caller {
            if !self.rules.model_allowed(caller.level, model) {
                bump(self.metrics.model_denied);
                return Step::Reply(LocalReply::new(
                    403,
                    format!("The model `{model}` is not allowed for this key."),
                    "invalid_request_error",
                    "model_not_allowed",
                ));
            }
        }
        if let Some((target, rename)) = self.rules.route_model(ex.route, model) {
            host::set_request_header(TARGET_HEADER, Some(&target.to_string()));
            // Envoy re-picks the route from the new header; harmless when the function is missing.
            let _ = host::call_foreign_function("clear_route_cache", None);
            if let (Some(new), Some(serde_json::Value::Object(obj))) = (rename, ex.body.as_mut()) {
                obj.insert("model".into(), serde_json::Value::String(new.to_string()));
                ex.body_changed = true;
            }
        }
        Step::Continue
    }

    /// Response headers: an upstream 401/403/429 for a pooled key starts its cooldown.
    pub fn on_response_headers(&self, ex: &Exchange) {
        let Some(key) = ex.upstream_key else {
            return;
        };
        if !is_key_failure(ex.status) || self.rules.cooldown_ms() == 0 {
            return;
        }
        // The gateway's own replies (limits, say) carry this header: not the key's fault.
        if host::header_value(
            proxy_wasm::types::MapType::HttpResponseHeaders,
            "x-llm-forward-error",
        )
        .is_some()
        {
            return;
        }
        let until = host::now_ms().saturating_add(self.rules.cooldown_ms());
        let n = self.rules.upstream_count();
        // Every pool holding the key (pools with the same keys share one value).
        let mut targets: Vec<&String> = self
            .rotation_keys
            .iter()
            .filter(|((route, level), _)| self.rules.pool(*route, *level).contains(&key))
            .map(|(_, shared_key)| shared_key)
            .collect();
        targets.sort();
        targets.dedup();
        let mut exhausted = false;
        for shared_key in targets {
            exhausted |= !record_cooldown(shared_key, key, until, n);
        }
        if exhausted {
            bump(self.metrics.cas_exhausted);
            return;
        }
        bump(self.metrics.cooldowns);
        log(
            LogLevel::Warn,
            &format!(
                "llm-forward: upstream key #{key} answered {}; skipped for {}s",
                ex.status,
                self.rules.cooldown_ms() / 1000
            ),
        );
    }

    /// The next upstream key of the `(route, level)` pool, skipping cooling keys.
    fn next_upstream_key(&self, route: usize, level: u32, now: u64) -> Option<usize> {
        let pool = self.rules.pool(route, level);
        match pool {
            [] => return None,
            [only] => return Some(*only),
            _ => {}
        }
        let now = if now > 0 { now } else { host::now_ms() };
        let built;
        let key = match self.rotation_keys.get(&(route, level)) {
            Some(k) => k,
            None => {
                built = rotation_key(&self.rules, route, level);
                &built
            }
        };
        let mut last = None;
        for _ in 0..MAX_CAS_TRIES {
            let (value, cas) = host::get_shared_data(key).unwrap_or((None, None));
            let (counter, table) = split_pool_value(value.as_deref().unwrap_or(&[]));
            let cooling = if table.is_empty() {
                Vec::new()
            } else {
                decode_cooldowns(table, self.rules.upstream_count())
            };
            let (pick, next) = pick_key(pool, counter, &cooling, now)?;
            last = Some(pick);
            let counter = next.to_le_bytes();
            // No key cooling (the usual case): the value is the counter alone, no buffer needed.
            let joined;
            let value: &[u8] = if table.is_empty() {
                &counter
            } else {
                joined = [&counter[..], table].concat();
                &joined
            };
            match host::set_shared_data(key, Some(value), cas) {
                Err(Status::CasMismatch) => continue,
                _ => return Some(pick),
            }
        }
        bump(self.metrics.cas_exhausted);
        last
    }
}

/// A pool's shared value: the rotation counter and the (encoded) cooldown table after it.
fn split_pool_value(bytes: &[u8]) -> (u64, &[u8]) {
    let counter = bytes.get(..8).map(decode_counter).unwrap_or(0);
    (counter, bytes.get(8..).unwrap_or(&[]))
}

/// Sets `key`'s cooldown in one pool's value (keeping its counter and the other keys' entries).
/// False when the CAS retries ran out.
fn record_cooldown(shared_key: &str, key: usize, until: u64, keys: usize) -> bool {
    for _ in 0..MAX_CAS_TRIES {
        let (value, cas) = host::get_shared_data(shared_key).unwrap_or((None, None));
        let (counter, table) = split_pool_value(value.as_deref().unwrap_or(&[]));
        let mut table = decode_cooldowns(table, keys);
        if let Some(slot) = table.get_mut(key) {
            *slot = until;
        }
        let mut out = counter.to_le_bytes().to_vec();
        out.extend_from_slice(&encode_cooldowns(&table));
        match host::set_shared_data(shared_key, Some(&out), cas) {
            Err(Status::CasMismatch) => continue,
            _ => return true,
        }
    }
    false
}

/// The shared-data key of a pool's rotation counter: level and key indexes, so routes with the
/// same pool share one rotation.
fn rotation_key(rules: &Access, route: usize, level: u32) -> String {
    let ids: Vec<String> = rules
        .pool(route, level)
        .iter()
        .map(|i| i.to_string())
        .collect();
    format!("llm_forward.access.rr.{level}.{}", ids.join("-"))
}

fn parse_address(address: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(address)
        .ok()
        .and_then(llm_forward_core::cidr::parse_peer_address)
}

/// Puts `key` where the route carries keys, or removes the client's key when `None`.
fn write_key(location: &KeyLocation, path: &str, key: Option<&UpstreamKey>) {
    match location {
        // `Bearer <key>` was built at configure time.
        KeyLocation::Bearer => {
            host::set_request_header("authorization", key.map(UpstreamKey::bearer))
        }
        KeyLocation::Header(name) => host::set_request_header(name, key.map(UpstreamKey::secret)),
        KeyLocation::Query(name) => {
            let new_path = replace_query_param(path, name, key.map(UpstreamKey::secret));
            host::set_request_header(":path", Some(&new_path));
        }
    }
}

/// Writes `ex.body` back into the request when a feature changed it, with a matching
/// `content-length` (a stale length would truncate a shorter body or spill a longer one onto the
/// upstream connection). Call once, at the end of the body phase.
pub fn write_back_body(ex: &mut Exchange, original_size: usize) {
    if !ex.body_changed {
        return;
    }
    let Some(body) = ex.body.as_ref() else {
        return;
    };
    let Ok(bytes) = serde_json::to_vec(body) else {
        return;
    };
    if host::set_buffer(
        proxy_wasm::types::BufferType::HttpRequestBody,
        0,
        original_size,
        &bytes,
    )
    .is_ok()
    {
        host::set_request_header("content-length", Some(&bytes.len().to_string()));
        ex.body_changed = false;
    }
}

/// Bodies the model of a restricted caller can be read from: JSON (or no type) and forms.
fn is_model_readable_content_type(content_type: Option<&str>) -> bool {
    let essence = content_type
        .and_then(|c| c.split(';').next())
        .map(str::trim);
    match essence {
        None | Some("") => true,
        Some(e) => {
            e.eq_ignore_ascii_case("application/json")
                || e.eq_ignore_ascii_case("text/json")
                || ends_with_ignore_case(e, "+json")
                || e.eq_ignore_ascii_case("multipart/form-data")
                || e.eq_ignore_ascii_case("application/x-www-form-urlencoded")
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::host::fake;
    use llm_forward_core::config::Config;

    fn state() -> (FilterConfig, AccessState) {
        fake::reset();
        let config = serde_json::json!({
            "server": {"address": "127.0.0.1", "port": 8080, "admin_port": 8081},
            "routes": [
                {"route": "/", "base_url": "http://127.0.0.1:9", "type": "openai"},
                {"route": "/gen", "base_url": "http://127.0.0.1:9", "type": "general",
                 "model_paths": ["/run"]},
            ],
            "keys": {
                "upstream": [{"key": "sk-a", "levels": [1]}],
                "forward": [{"name": "alice", "key": "fk-alice", "level": 1}],
                "levels": {"1": ["gpt-4o-mini"]},
            },
            "ip": {"allow": ["127.0.0.0/8"]},
        });
        let valid = Config::from_json(config.to_string().as_bytes())
            .unwrap()
            .validate()
            .unwrap();
        let config = FilterConfig::from_valid(&valid);
        let state = AccessState::configure(&config).unwrap();
        (config, state)
    }

    #[test]
    fn remembered_model_sources_are_the_computed_ones() {
        let (config, state) = state();
        let shapes = [
            (0, "POST", "/v1/chat/completions"),
            (0, "GET", "/v1/chat/completions"),
            (0, "POST", "/v1/chat/completions?x=1"),
            (0, "GET", "/v1/realtime?model=gpt-4o-mini"),
            (0, "POST", "/v1/models"),
            (0, "POST", "/openai/deployments/gpt-4o/chat/completions"),
            (0, "POST", "/v1/../chat/completions"),
            (1, "POST", "/gen/run"),
            (1, "POST", "/gen/other"),
        ];
        for round in 0..2 {
            for (route, method, path) in shapes {
                let ex = Exchange {
                    route,
                    method: method.into(),
                    path: path.into(),
                    ..Exchange::default()
                };
                let expected = state.find_model_source(&config, &ex);
                // Asked twice in a row (the memo answers the second) and after another shape.
                assert_eq!(state.model_source(&config, &ex), expected, "{round} {path}");
                assert_eq!(state.model_source(&config, &ex), expected, "{round} {path}");
            }
        }
    }

    #[test]
    fn remembered_client_addresses_are_the_parsed_ones() {
        let (_, state) = state();
        for (address, ip) in [
            ("127.0.0.1:40000", Some("127.0.0.1")),
            ("127.0.0.1:40000", Some("127.0.0.1")),
            ("10.0.0.1:1", Some("10.0.0.1")),
            ("[::1]:443", Some("::1")),
            ("not an address", None),
            ("not an address", None),
            ("127.0.0.1:40000", Some("127.0.0.1")),
        ] {
            fake::set_property_bytes("source.address", address.as_bytes());
            let want: Option<IpAddr> = ip.map(|i| i.parse().unwrap());
            assert_eq!(state.client_ip(), want, "{address}");
        }
    }
}
