//! Rate limits, token quotas and output pacing: glue between Envoy's phases and
//! `llm_forward_core::limits` (rule choice, window math, the CAS protocol, SSE event work).
//!
//! - Request headers: the token quota is checked (reads only), then the request limit is acquired
//!   (CAS writes). Either may answer 429 with OpenAI's headers. Retries that run out fail closed
//!   (429) and count `llm_forward.limit_cas_exhausted_total`.
//! - Request body (only chat/completions with a quota): `stream_options.include_usage` is injected
//!   into streaming requests that did not ask for it, so the final usage chunk exists.
//! - Response: `x-ratelimit-*` headers on success; the usage is read (from `Exchange::answer` when
//!   the logs feature parsed it, else here) and, for injected streams, the usage-only chunk and the
//!   `"usage":null` fields are removed from what the client sees. Paced routes release SSE events
//!   one interval apart: events that must wait are taken out of Envoy's buffer, the stream is
//!   paused, and the root context's tick puts the next event back and resumes it.
//! - Log: the quota is charged with `usage.total_tokens`, or, when the response carried no usage
//!   (client abort before the usage chunk, body not read so `include_usage` was not injected),
//!   with an estimate (`fleet::estimate_tokens`: request and streamed bytes / 4).
//!
//! Fleet mode (`limits.backend`/`limits.service`, `FilterConfig::ratelimit`): the same rules are
//! counted by the rate-limit service instead of shared data: one admission call per request (token
//! check with addend 0 + request limit with addend 1) holds the request until it answers, and the
//! charge is a second, detached call after the response (`crate::fleet`). Pacing stays local.

use crate::exchange::{Exchange, LocalReply, Step};
use crate::host;
use crate::memory::Use;
use crate::plugin::Plugin;
use llm_forward_core::access::contains_ignore_case;
use llm_forward_core::answer::{usage_from_json_body, Answer, ApiKind, StreamExtractor};
use llm_forward_core::config::{FilterConfig, RouteKind};
use llm_forward_core::limits::config::{
    global_id, pacing_interval_ms, push_global_subject, push_subject, rule_id, select, storage_key,
    Identity, LimitKind, LimitsConfig, Per,
};
use llm_forward_core::limits::fleet::{
    descriptors, estimate_tokens, wire_global_subject, wire_subject, Descriptor, FleetSettings,
    RuleKind,
};
use llm_forward_core::limits::store::{
    acquire, charge_all, check_all, init_lock, Acquire, Read, SharedStore, Slot, Tries, Write,
};
use llm_forward_core::limits::stream::{
    asked_for_usage, inject_include_usage, rewrite_injected_usage, EventSplitter, UsageRewrite,
};
use llm_forward_core::limits::{decimal, format_reset, retry_after_secs, Combined, LimitSpec};
use llm_forward_core::routing::route_path;
use llm_forward_core::sse::{SseEvent, SseParser};
use proxy_wasm::types::{Action, BufferType, LogLevel, MetricType, Status};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

/// How often the root context looks for paced events to release.
pub const TICK: Duration = Duration::from_millis(5);
const TICK_MS: u64 = 5;
/// Caps: an unfinished SSE event, and a JSON response read for its usage.
const MAX_EVENT_BYTES: usize = 1 << 20;
const MAX_JSON_BYTES: usize = 8 << 20;

/// Proxy-wasm shared data (one store per VM id, shared by every worker).
pub struct HostStore;

impl SharedStore for HostStore {
    fn get(&mut self, key: &str) -> Read {
        match host::get_shared_data(key) {
            Ok((Some(value), Some(cas))) if cas != 0 => Read::Found(value, cas),
            Ok((None, _)) => Read::Missing,
            Ok(_) | Err(_) => Read::Error,
        }
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Write {
        let cas = (cas != 0).then_some(cas);
        match host::set_shared_data(key, Some(value), cas) {
            Ok(()) => Write::Ok,
            Err(Status::CasMismatch) => Write::Mismatch,
            Err(_) => Write::Error,
        }
    }
}

/// One paced stream, kept where the root's tick can reach it.
#[derive(Debug, Default)]
struct Paced {
    interval_ms: u64,
    /// When the next event may leave.
    next_ms: u64,
    /// Whole events not yet released.
    queue: VecDeque<Vec<u8>>,
    /// Events already due, to be put back into Envoy's buffer at the next tick.
    ready: Vec<u8>,
    /// The stream is paused with an empty Envoy buffer (the tick may release into it).
    paused: bool,
    /// The upstream finished: one release is left, so everything goes at `wake_ms`.
    ended: bool,
    wake_ms: u64,
    /// Bytes in `queue` and `ready`, counted against the worker's memory budget.
    held: usize,
}

impl Paced {
    /// Moves the events due at `now` into `ready`. After an idle gap the schedule restarts at
    /// `now`, so a gap never turns into a burst.
    fn take_due(&mut self, now: u64) {
        if self.queue.is_empty() || now < self.next_ms {
            return;
        }
        let interval = self.interval_ms.max(1);
        let base = self.next_ms.max(now.saturating_sub(TICK_MS));
        let mut count = 1 + (now - base) / interval;
        while count > 0 {
            let Some(event) = self.queue.pop_front() else {
                break;
            };
            self.ready.extend_from_slice(&event);
            count -= 1;
            self.next_ms = self.next_ms.max(base) + interval;
        }
        self.next_ms = self.next_ms.max(now + 1);
    }
}

/// Limits state every request of a worker shares.
#[derive(Debug, Default)]
pub struct LimitsShared {
    request_ids: Vec<String>,
    token_ids: Vec<String>,
    global_id: String,
    /// Per route: (`limited.<route>.requests`, `limited.<route>.tokens`).
    limited: Vec<(Option<u32>, Option<u32>)>,
    cas_exhausted: Option<u32>,
    charge_failed: Option<u32>,
    /// Paced streams by HTTP context id.
    paced: RefCell<HashMap<u32, Paced>>,
    /// Identifies this VM's creation-lock entries.
    owner: u64,
    /// Storage keys by rule id and subject (see [`LimitsShared::slots_for`]).
    slot_memo: RefCell<HashMap<String, Rc<[Slot]>>>,
    /// The buffer a request's memo key (`<rule id>\n<subject>`) is written into.
    memo_key: RefCell<String>,
    /// Fleet mode: whether this worker's Envoy has the rate-limit cluster.
    probe: crate::fleet::ClusterProbe,
    /// The root context's id: token charges are sent as it (see `crate::fleet`).
    root_id: u32,
    /// The rate-limit service failed (status, garbage, timeout, no cluster): failure mode applied.
    rls_failed: Option<u32>,
    /// Charges made from an estimate (no usage in the response: abort, unparsed body).
    charge_estimated: Option<u32>,
}

/// Subjects whose storage keys a worker remembers.
const MAX_SLOT_MEMO: usize = 4096;

fn counter(name: &str) -> Option<u32> {
    host::define_metric(MetricType::Counter, name).ok()
}

fn bump(id: Option<u32>) {
    if let Some(id) = id {
        let _ = host::increment_metric(id, 1);
    }
}

impl LimitsShared {
    pub fn configure(config: &FilterConfig, root_id: u32) -> LimitsShared {
        let limits = &config.limits;
        if limits.is_empty() {
            return LimitsShared::default();
        }
        if config.ratelimit.is_none() {
            init_lock(&mut HostStore);
        }
        let mut owner = [0u8; 8];
        let _ = getrandom::fill(&mut owner);
        LimitsShared {
            request_ids: limits
                .requests
                .iter()
                .map(|r| rule_id(LimitKind::Requests, r))
                .collect(),
            token_ids: limits
                .tokens
                .iter()
                .map(|r| rule_id(LimitKind::Tokens, r))
                .collect(),
            global_id: global_id(&limits.global),
            limited: config
                .routes
                .iter()
                .map(|r| {
                    (
                        counter(&format!("llm_forward.limited.{}.requests", r.name)),
                        counter(&format!("llm_forward.limited.{}.tokens", r.name)),
                    )
                })
                .collect(),
            cas_exhausted: counter("llm_forward.limit_cas_exhausted_total"),
            charge_failed: counter("llm_forward.limit_charge_failed_total"),
            paced: RefCell::new(HashMap::new()),
            owner: u64::from_le_bytes(owner),
            slot_memo: RefCell::new(HashMap::new()),
            memo_key: RefCell::new(String::new()),
            probe: crate::fleet::ClusterProbe::default(),
            root_id,
            rls_failed: config
                .ratelimit
                .as_ref()
                .and_then(|_| counter("llm_forward.ratelimit_service_failed_total")),
            charge_estimated: counter("llm_forward.limit_charge_estimated_total"),
        }
    }

    /// Whether the root must tick for pacing.
    pub fn needs_tick(config: &FilterConfig) -> bool {
        !config.limits.pacing.is_empty()
    }

    fn count_limited(&self, route: usize, kind: LimitKind) {
        if let Some((requests, tokens)) = self.limited.get(route) {
            bump(match kind {
                LimitKind::Requests => *requests,
                LimitKind::Tokens => *tokens,
            });
        }
    }

    /// Root tick: releases the paced events that are due, each into its own stream.
    pub fn on_tick(&self) {
        let now = host::now_ms();
        let mut releases: Vec<(u32, Vec<u8>, bool)> = Vec::new();
        {
            let Ok(mut paced) = self.paced.try_borrow_mut() else {
                return;
            };
            let mut finished = Vec::new();
            for (id, p) in paced.iter_mut() {
                if !p.paused || now < p.wake_ms {
                    continue;
                }
                if p.ended {
                    let mut all = std::mem::take(&mut p.ready);
                    for event in p.queue.drain(..) {
                        all.extend_from_slice(&event);
                    }
                    releases.push((*id, all, true));
                    finished.push(*id);
                } else {
                    p.take_due(now);
                    if p.ready.is_empty() {
                        p.wake_ms = p.next_ms;
                        continue;
                    }
                    p.paused = false;
                    p.held = p.held.saturating_sub(p.ready.len());
                    releases.push((*id, std::mem::take(&mut p.ready), false));
                }
            }
            for id in finished {
                paced.remove(&id);
            }
        }
        for (id, bytes, _last) in releases {
            if host::set_effective_context(id).is_err() {
                continue;
            }
            let _ = host::set_buffer(BufferType::HttpResponseBody, 0, 0, &bytes);
            let _ = host::resume_http_response();
        }
    }

    /// The slots of `(rule id, spec, subject)`, remembered per worker: their keys hash the subject
    /// (SHA-256), which every request of the same caller would otherwise redo. `subject` writes the
    /// subject; the memo key is built in a reused buffer and a hit shares the slots (no copies).
    /// Bounded: the memo is emptied when it reaches [`MAX_SLOT_MEMO`] subjects.
    fn slots_for(
        &self,
        id: &str,
        spec: &LimitSpec,
        subject: impl FnOnce(&mut String),
    ) -> Rc<[Slot]> {
        let (Ok(mut memo), Ok(mut key)) = (
            self.slot_memo.try_borrow_mut(),
            self.memo_key.try_borrow_mut(),
        ) else {
            let mut plain = String::new();
            subject(&mut plain);
            return slots_for(id, spec, &plain).into();
        };
        key.clear();
        key.push_str(id);
        key.push('\n');
        let start = key.len();
        subject(&mut key);
        if let Some(slots) = memo.get(key.as_str()) {
            return Rc::clone(slots);
        }
        let slots: Rc<[Slot]> = slots_for(id, spec, key.get(start..).unwrap_or("")).into();
        if memo.len() >= MAX_SLOT_MEMO {
            memo.clear();
        }
        memo.insert(key.clone(), Rc::clone(&slots));
        slots
    }

    fn forget(&self, context_id: u32) {
        if let Ok(mut paced) = self.paced.try_borrow_mut() {
            paced.remove(&context_id);
        }
    }
}

/// What the limits feature keeps for one request.
#[derive(Debug, Default)]
pub struct LimitRequest {
    context_id: u32,
    /// Token-quota buckets to charge after the response (shared with the worker's memo).
    quota: Rc<[Slot]>,
    /// The gateway added `include_usage`: the client must not see its effects.
    strip: bool,
    pace_ms: Option<u64>,
    /// Reading the response (SSE events for rewriting/pacing).
    splitter: Option<EventSplitter>,
    pacing: bool,
    tap: Tap,
    /// Fleet mode: the admission call in flight and what it asked.
    pending: Option<Pending>,
    /// Fleet mode: the token-quota descriptors to charge after the response.
    charge: Vec<Descriptor>,
    /// For the charge estimate when the usage is unknown.
    request_bytes: u64,
    response_bytes: u64,
}

/// An admission call to the rate-limit service.
#[derive(Debug)]
struct Pending {
    token: u32,
    sent: Vec<Descriptor>,
    token_spec: LimitSpec,
    request_spec: LimitSpec,
}

// One per request; boxing the parser would only add an allocation per streamed response.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Default)]
enum Tap {
    #[default]
    Off,
    Sse {
        parser: SseParser,
        extractor: StreamExtractor,
    },
    Json(Vec<u8>, bool),
}

fn limit_reply(kind: LimitKind, rate: Option<String>, c: &Combined) -> LocalReply {
    let message = match (kind, rate) {
        (LimitKind::Requests, Some(rate)) => format!("Rate limit exceeded: {rate}"),
        (LimitKind::Tokens, Some(rate)) => format!("Token rate limit exceeded: {rate} tokens"),
        (_, None) => "Rate limit state is busy; retry shortly".to_string(),
    };
    let mut reply = LocalReply::new(429, message, kind.as_str(), "rate_limit_exceeded");
    reply.headers.push((
        "retry-after".into(),
        decimal(retry_after_secs(c.reset_after_ms)),
    ));
    push_owned(&mut reply.headers, ratelimit_headers(kind, c));
    reply
}

/// One `x-ratelimit-*` header: its (fixed) name and value.
pub type RateHeader = (&'static str, String);

/// OpenAI's three headers for `kind`. Values are written without the formatting machinery: an
/// admitted limited request builds them every time.
fn ratelimit_headers(kind: LimitKind, c: &Combined) -> [RateHeader; 3] {
    let [limit, remaining, reset] = kind.header_names();
    [
        (limit, decimal(c.limit)),
        (remaining, decimal(c.remaining)),
        (reset, format_reset(c.reset_after_ms)),
    ]
}

fn push_owned(out: &mut Vec<(String, String)>, headers: impl IntoIterator<Item = RateHeader>) {
    out.extend(headers.into_iter().map(|(k, v)| (k.to_string(), v)));
}

fn is_usage_api(ex: &Exchange, config: &FilterConfig) -> bool {
    let Some(route) = config.routes.get(ex.route) else {
        return false;
    };
    if route.kind != RouteKind::Openai {
        return false;
    }
    match ex.api {
        Some(api) => matches!(api, ApiKind::Chat | ApiKind::Completion),
        None => {
            let rel = route_path(&route.prefix, &ex.path);
            rel.ends_with("/chat/completions") || rel.ends_with("/completions")
        }
    }
}

impl LimitRequest {
    /// Request headers: quota check, request limit, pacing choice. `None` when no limit applies.
    pub fn start(
        plugin: &Plugin,
        ex: &mut Exchange,
        context_id: u32,
    ) -> (Option<LimitRequest>, Step) {
        let limits: &LimitsConfig = &plugin.config.limits;
        if limits.is_empty() {
            return (None, Step::Continue);
        }
        let shared = &plugin.limits;
        let level = ex.caller.as_ref().map_or(0, |c| c.level);
        let needs_ip = limits
            .requests
            .iter()
            .chain(limits.tokens.iter())
            .any(|r| r.per == Per::Ip);
        if needs_ip && ex.client_ip.is_none() {
            ex.client_ip = plugin.access.client_ip();
        }
        let who = Identity {
            key_name: ex.caller.as_ref().and_then(|c| c.key_name.as_deref()),
            authorization: ex.request_header("authorization"),
            ip: ex.client_ip,
            level,
        };
        // The arrival time, read once by the headers phase.
        let now = if ex.started_ms > 0 {
            ex.started_ms
        } else {
            host::now_ms()
        };
        let mut lr = LimitRequest {
            context_id,
            request_bytes: ex
                .request_header("content-length")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
            ..LimitRequest::default()
        };
        if let Some(settings) = &plugin.config.ratelimit {
            return lr.start_fleet(plugin, settings, ex, &who);
        }
        let mut headers: Vec<RateHeader> = Vec::with_capacity(6);

        // Token quota first: it only reads, so a request it refuses costs no request slot.
        if let Some(i) = select(&limits.tokens, &ex.path, level) {
            if let (Some(rule), Some(id)) = (limits.tokens.get(i), shared.token_ids.get(i)) {
                let slots =
                    shared.slots_for(id, &rule.limit, |out| push_subject(out, rule.per, &who));
                if !slots.is_empty() {
                    match check_all(&mut HostStore, limits.strategy, &slots, now) {
                        Acquire::Allowed(c) => {
                            headers.extend(ratelimit_headers(LimitKind::Tokens, &c));
                            if is_usage_api(ex, &plugin.config) {
                                lr.quota = slots;
                            }
                        }
                        Acquire::Rejected(c) => {
                            shared.count_limited(ex.route, LimitKind::Tokens);
                            let rate = rate_text(&rule.limit, c.first_failing);
                            return (None, Step::Reply(limit_reply(LimitKind::Tokens, rate, &c)));
                        }
                        Acquire::Exhausted => {
                            return (None, Step::Reply(exhausted(plugin, ex, LimitKind::Tokens)));
                        }
                    }
                }
            }
        }

        // `per: None` is the global limit, whose subject also names the path.
        let (id, spec, per) = match select(&limits.requests, &ex.path, level) {
            Some(i) => match (limits.requests.get(i), shared.request_ids.get(i)) {
                (Some(rule), Some(id)) => (id.as_str(), &rule.limit, Some(rule.per)),
                _ => (shared.global_id.as_str(), &limits.global, None),
            },
            None => (shared.global_id.as_str(), &limits.global, None),
        };
        let slots = shared.slots_for(id, spec, |out| match per {
            Some(per) => push_subject(out, per, &who),
            None => push_global_subject(out, &ex.path, &who),
        });
        if !slots.is_empty() {
            let tries = Tries::default();
            match acquire(
                &mut HostStore,
                limits.strategy,
                &slots,
                now,
                1,
                shared.owner,
                tries,
            ) {
                Acquire::Allowed(c) => headers.extend(ratelimit_headers(LimitKind::Requests, &c)),
                Acquire::Rejected(c) => {
                    shared.count_limited(ex.route, LimitKind::Requests);
                    let rate = rate_text(spec, c.first_failing);
                    return (
                        None,
                        Step::Reply(limit_reply(LimitKind::Requests, rate, &c)),
                    );
                }
                Acquire::Exhausted => {
                    return (
                        None,
                        Step::Reply(exhausted(plugin, ex, LimitKind::Requests)),
                    );
                }
            }
        }

        lr.pace_ms = select(&limits.pacing, &ex.path, level)
            .and_then(|i| limits.pacing.get(i))
            .and_then(|r| pacing_interval_ms(&r.limit));
        let idle = headers.is_empty() && lr.quota.is_empty() && lr.pace_ms.is_none();
        // Every response carries them, local replies included (`Exchange::reply_headers`).
        ex.reply_headers = headers;
        (if idle { None } else { Some(lr) }, Step::Continue)
    }

    /// Fleet mode: builds the descriptors and sends the admission call. `Wait` until
    /// [`LimitRequest::on_rls_response`].
    fn start_fleet(
        mut self,
        plugin: &Plugin,
        settings: &FleetSettings,
        ex: &Exchange,
        who: &Identity<'_>,
    ) -> (Option<LimitRequest>, Step) {
        let limits = &plugin.config.limits;
        let shared = &plugin.limits;
        let level = who.level;
        let mut sent = Vec::new();
        let mut token_spec = LimitSpec::Unlimited;
        if let Some(i) = select(&limits.tokens, &ex.path, level) {
            if let (Some(rule), Some(id)) = (limits.tokens.get(i), shared.token_ids.get(i)) {
                let subject = wire_subject(rule.per, who);
                let check = descriptors(
                    RuleKind::Tokens,
                    id,
                    &rule.limit,
                    &subject,
                    limits.strategy,
                    0,
                );
                if is_usage_api(ex, &plugin.config) {
                    self.charge = check.clone();
                }
                sent.extend(check);
                token_spec = rule.limit.clone();
            }
        }
        let (kind, id, spec, subject) = match select(&limits.requests, &ex.path, level)
            .and_then(|i| Some((limits.requests.get(i)?, shared.request_ids.get(i)?)))
        {
            Some((rule, id)) => (
                RuleKind::Requests,
                id.as_str(),
                &rule.limit,
                wire_subject(rule.per, who),
            ),
            None => (
                RuleKind::Global,
                shared.global_id.as_str(),
                &limits.global,
                wire_global_subject(&ex.path, who),
            ),
        };
        sent.extend(descriptors(kind, id, spec, &subject, limits.strategy, 1));
        self.pace_ms = select(&limits.pacing, &ex.path, level)
            .and_then(|i| limits.pacing.get(i))
            .and_then(|r| pacing_interval_ms(&r.limit));
        if sent.is_empty() {
            let idle = self.pace_ms.is_none();
            return (if idle { None } else { Some(self) }, Step::Continue);
        }
        match crate::fleet::dispatch(&shared.probe, settings, &sent) {
            Some(token) => {
                self.pending = Some(Pending {
                    token,
                    sent,
                    token_spec,
                    request_spec: spec.clone(),
                });
                (Some(self), Step::Wait)
            }
            None => {
                let step = rls_failed(plugin, settings);
                (Some(self), step)
            }
        }
    }

    /// Whether an admission call is in flight.
    pub fn waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// The admission call answered: `Continue` (admitted, the `x-ratelimit-*` headers are in
    /// `ex.reply_headers`) or `Reply` (429, or 503 with `failure_mode: closed`).
    /// `None` when `token` is not this request's call.
    pub fn on_rls_response(
        &mut self,
        plugin: &Plugin,
        ex: &mut Exchange,
        token: u32,
        status_code: u32,
        size: usize,
    ) -> Option<Step> {
        if self.pending.as_ref().map(|p| p.token) != Some(token) {
            return None;
        }
        let pending = self.pending.take()?;
        let settings = plugin.config.ratelimit.as_ref()?;
        let now = if ex.started_ms > 0 {
            ex.started_ms
        } else {
            host::now_ms()
        };
        let Some(v) = crate::fleet::read_answer(status_code, size, &pending.sent, now) else {
            return Some(rls_failed(plugin, settings));
        };
        if let Some((kind, rate_index)) = v.refused {
            let limit_kind = kind.limit_kind();
            let (combined, spec) = match limit_kind {
                LimitKind::Tokens => (v.tokens, &pending.token_spec),
                LimitKind::Requests => (v.requests, &pending.request_spec),
            };
            let Some(c) = combined else {
                return Some(rls_failed(plugin, settings));
            };
            plugin.limits.count_limited(ex.route, limit_kind);
            let mut reply = limit_reply(limit_kind, rate_text(spec, Some(rate_index)), &c);
            // The other kind's headers too, as an admitted request would get them.
            let other = match limit_kind {
                LimitKind::Tokens => v
                    .requests
                    .map(|c| ratelimit_headers(LimitKind::Requests, &c)),
                LimitKind::Requests => v.tokens.map(|c| ratelimit_headers(LimitKind::Tokens, &c)),
            };
            if let Some(other) = other {
                push_owned(&mut reply.headers, other);
            }
            return Some(Step::Reply(reply));
        }
        if let Some(c) = &v.tokens {
            ex.reply_headers
                .extend(ratelimit_headers(LimitKind::Tokens, c));
        }
        if let Some(c) = &v.requests {
            ex.reply_headers
                .extend(ratelimit_headers(LimitKind::Requests, c));
        }
        Some(Step::Continue)
    }

    /// Whether the request body must be read (a quota'd chat/completions request that may stream).
    pub fn needs_body(&self, ex: &Exchange) -> bool {
        self.has_quota()
            && ex
                .request_header("content-type")
                .is_some_and(|ct| contains_ignore_case(ct, "json"))
    }

    /// The whole request body: parse it (unless another feature did) and inject `include_usage`
    /// into streaming requests that did not ask for it. `Exchange::body_changed` makes the body
    /// phase write it back (with a new `content-length`).
    pub fn on_request_body(&mut self, ex: &mut Exchange, bytes: &[u8]) {
        if !self.has_quota() {
            return;
        }
        self.request_bytes = bytes.len() as u64;
        if ex.body.is_none() {
            if let Ok(value @ serde_json::Value::Object(_)) =
                serde_json::from_slice::<serde_json::Value>(bytes)
            {
                ex.stream = value
                    .get("stream")
                    .and_then(|s| s.as_bool())
                    .unwrap_or(false);
                if ex.model.is_none() {
                    ex.model = value
                        .get("model")
                        .and_then(|m| m.as_str())
                        .map(String::from);
                }
                ex.body = Some(value);
            }
        }
        let Some(body) = ex.body.as_mut() else {
            return;
        };
        if ex.stream && !asked_for_usage(body) && inject_include_usage(body) {
            ex.body_changed = true;
            self.strip = true;
        }
    }

    /// Response headers: OpenAI's rate-limit headers; decide how the body is read.
    pub fn on_response_headers(&mut self, ex: &mut Exchange, others_parse: bool) {
        if ex.local_reply {
            // Sent with the reply (`Exchange::reply_headers`); nothing to rewrite, pace or charge.
            return;
        }
        for (name, value) in &ex.reply_headers {
            host::set_response_header(name, Some(value));
        }
        if ex.response_content_type.is_none() {
            ex.response_content_type = Some(
                crate::host::header_value(
                    proxy_wasm::types::MapType::HttpResponseHeaders,
                    "content-type",
                )
                .unwrap_or_default(),
            );
        }
        let sse = ex
            .response_content_type
            .as_deref()
            .is_some_and(|ct| ct.contains("text/event-stream"));
        let ok = (200..300).contains(&ex.status);
        self.strip &= sse && ok;
        self.pacing = sse && ok && self.pace_ms.is_some();
        if self.strip || self.pacing {
            self.splitter = Some(EventSplitter::new(MAX_EVENT_BYTES));
        }
        if self.strip {
            // The body changes length.
            host::set_response_header("content-length", None);
        }
        if self.has_quota() && ok && !others_parse {
            self.tap = if sse {
                Tap::Sse {
                    parser: SseParser::new(MAX_EVENT_BYTES),
                    extractor: StreamExtractor::usage_only(),
                }
            } else {
                Tap::Json(Vec::new(), false)
            };
        }
    }

    /// A response body chunk. Returns `Pause` only for a paced stream whose next event must wait.
    pub fn on_response_body(
        &mut self,
        plugin: &Plugin,
        ex: &mut Exchange,
        chunk: &mut host::ResponseChunk,
        end_of_stream: bool,
    ) -> Action {
        let size = chunk.size();
        self.response_bytes = self.response_bytes.saturating_add(size as u64);
        let reading = !matches!(self.tap, Tap::Off);
        if !reading && self.splitter.is_none() {
            return Action::Continue;
        }
        let chunk: &[u8] = chunk.bytes().ok().flatten().unwrap_or_default();
        self.read_usage(ex, chunk, end_of_stream);
        let Some(splitter) = self.splitter.as_mut() else {
            return Action::Continue;
        };
        let mut events = splitter.feed(chunk);
        if end_of_stream {
            events.extend(splitter.finish());
        }
        if self.strip {
            events = events
                .into_iter()
                .filter_map(|e| match rewrite_injected_usage(&e) {
                    UsageRewrite::Keep => Some(e),
                    UsageRewrite::Drop => None,
                    UsageRewrite::Replace(new) => Some(new),
                })
                .collect();
        }
        if !self.pacing {
            let out = events.concat();
            if out != chunk {
                let _ = host::set_buffer(BufferType::HttpResponseBody, 0, size, &out);
            }
            return Action::Continue;
        }
        self.pace(plugin, size, end_of_stream, events)
    }

    fn pace(
        &mut self,
        plugin: &Plugin,
        size: usize,
        end_of_stream: bool,
        events: Vec<Vec<u8>>,
    ) -> Action {
        let Ok(mut registry) = plugin.limits.paced.try_borrow_mut() else {
            return Action::Continue;
        };
        let interval = self.pace_ms.unwrap_or(1);
        let p = registry.entry(self.context_id).or_insert_with(|| Paced {
            interval_ms: interval,
            ..Paced::default()
        });
        p.held = p.held.saturating_add(events.iter().map(Vec::len).sum());
        p.queue.extend(events);
        // Past the worker's memory budget the stream is released unpaced (counted there).
        let fits = plugin
            .memory
            .reserve(self.context_id, Use::PacedQueue, p.held as u64);
        if !fits {
            let mut out = std::mem::take(&mut p.ready);
            out.extend(p.queue.drain(..).flatten());
            registry.remove(&self.context_id);
            self.pacing = false;
            let _ = host::set_buffer(BufferType::HttpResponseBody, 0, size, &out);
            return Action::Continue;
        }
        let now = host::now_ms();
        p.take_due(now);
        if end_of_stream {
            p.ended = true;
        }
        if p.queue.is_empty() {
            // Nothing waits: send what is due now (this also continues a held stream).
            p.paused = false;
            p.held = p.held.saturating_sub(p.ready.len());
            let out = std::mem::take(&mut p.ready);
            if end_of_stream {
                registry.remove(&self.context_id);
            }
            let _ = host::set_buffer(BufferType::HttpResponseBody, 0, size, &out);
            return Action::Continue;
        }
        // Events wait: hold the stream with an empty Envoy buffer; the tick puts them back.
        p.paused = true;
        p.wake_ms = if p.ended {
            // One release is left after the end of the stream: it goes when the last event may.
            let waiting = p.queue.len() as u64;
            p.next_ms.max(now) + waiting.saturating_sub(1) * p.interval_ms
        } else if p.ready.is_empty() {
            p.next_ms
        } else {
            now
        };
        let _ = host::set_buffer(BufferType::HttpResponseBody, 0, size, &[]);
        Action::Pause
    }

    fn read_usage(&mut self, ex: &mut Exchange, chunk: &[u8], end_of_stream: bool) {
        match &mut self.tap {
            Tap::Off => {}
            Tap::Sse { parser, extractor } => {
                let mut events: Vec<SseEvent> = Vec::new();
                parser.feed(chunk, &mut events);
                for ev in &events {
                    extractor.on_event(ev);
                }
            }
            Tap::Json(body, overflow) => {
                if *overflow || body.len().saturating_add(chunk.len()) > MAX_JSON_BYTES {
                    *overflow = true;
                    body.clear();
                } else {
                    body.extend_from_slice(chunk);
                }
            }
        }
        if end_of_stream {
            self.finish_usage(ex);
        }
    }

    /// Stores what was read into `Exchange::answer` (unless another feature already did).
    fn finish_usage(&mut self, ex: &mut Exchange) {
        let answer: Option<Answer> = match std::mem::take(&mut self.tap) {
            Tap::Off => None,
            Tap::Sse {
                mut parser,
                extractor,
            } => {
                parser.finish();
                Some(extractor.into_answer())
            }
            Tap::Json(body, overflow) => {
                let api = ex.api.unwrap_or(ApiKind::Chat);
                (!overflow)
                    .then(|| usage_from_json_body(api, &body))
                    .flatten()
            }
        };
        if ex.answer.is_none() {
            ex.answer = answer;
        }
    }

    /// The exchange is over: charge the quota with the tokens used. An admitted stream is never
    /// cut; its tokens are charged even past the quota.
    pub fn on_log(&mut self, plugin: &Plugin, ex: &mut Exchange) {
        plugin.limits.forget(self.context_id);
        self.finish_usage(ex);
        // Cache hits are answered locally: no upstream tokens were spent (see docs/cache.md).
        if !self.has_quota() || !(200..300).contains(&ex.status) || ex.cache_status == Some("hit") {
            return;
        }
        let usage = ex
            .answer
            .as_ref()
            .and_then(|a| a.usage.as_ref())
            .map(|u| u.total_tokens.max(u.prompt_tokens + u.completion_tokens));
        // No usage: the client left before the usage chunk, or the body could not be parsed so
        // `include_usage` was not injected. Charge an estimate rather than nothing.
        let tokens = match usage {
            Some(t) => t,
            None => {
                bump(plugin.limits.charge_estimated);
                estimate_tokens(self.request_bytes, self.response_bytes)
            }
        };
        if tokens == 0 {
            return;
        }
        if let Some(settings) = &plugin.config.ratelimit {
            let mut charge = std::mem::take(&mut self.charge);
            for d in &mut charge {
                d.hits_addend = tokens;
            }
            let sent = crate::fleet::dispatch_detached(
                &plugin.limits.probe,
                settings,
                &charge,
                plugin.limits.root_id,
                self.context_id,
            );
            if !sent {
                bump(plugin.limits.charge_failed);
            }
            return;
        }
        let limits = &plugin.config.limits;
        let failed = charge_all(
            &mut HostStore,
            limits.strategy,
            &self.quota,
            host::now_ms(),
            tokens,
            plugin.limits.owner,
            Tries::default(),
        );
        if failed > 0 {
            bump(plugin.limits.charge_failed);
            host::log(
                LogLevel::Warn,
                "llm-forward: a token quota charge was lost (CAS retries ran out)",
            );
        }
    }

    /// A token quota will be charged after the response (either backend).
    fn has_quota(&self) -> bool {
        !self.quota.is_empty() || !self.charge.is_empty()
    }
}

/// The rate-limit service failed: `failure_mode` decides (counted).
fn rls_failed(plugin: &Plugin, settings: &FleetSettings) -> Step {
    bump(plugin.limits.rls_failed);
    if settings.failure_mode.is_open() {
        return Step::Continue;
    }
    Step::Reply(LocalReply::new(
        503,
        "The rate-limit service is unavailable; retry shortly.",
        "api_error",
        "rate_limit_service_unavailable",
    ))
}

fn slots_for(id: &str, spec: &LimitSpec, subject: &str) -> Vec<Slot> {
    spec.rates()
        .iter()
        .enumerate()
        .map(|(i, rate)| Slot {
            key: storage_key(id, i, subject),
            rate: *rate,
        })
        .collect()
}

fn rate_text(spec: &LimitSpec, index: Option<usize>) -> Option<String> {
    index
        .and_then(|i| spec.rates().get(i))
        .or_else(|| spec.rates().first())
        .map(|r| r.to_string())
}

/// Retries ran out: fail closed, counted.
fn exhausted(plugin: &Plugin, ex: &Exchange, kind: LimitKind) -> LocalReply {
    bump(plugin.limits.cas_exhausted);
    plugin.limits.count_limited(ex.route, kind);
    host::log(
        LogLevel::Warn,
        "llm-forward: rate limit CAS retries ran out; answering 429",
    );
    let c = Combined {
        allowed: false,
        first_failing: None,
        remaining: 0,
        limit: 0,
        reset_after_ms: 1_000,
    };
    let mut reply = limit_reply(kind, None, &c);
    reply.headers.retain(|(k, _)| k == "retry-after");
    reply
}
