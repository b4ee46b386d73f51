//! Routes with nothing to do, decided once at configure time: a request on such a route costs
//! only its route counter (`llm_forward.route.<route>.requests_total`), with no header, property or
//! body read, and every phase continues at once, as in the no-op filter (bench/noop-filter).
//!
//! Routes whose only feature is usage metrics (`logging.metrics`, on by default, with nothing else
//! configured: bench variant f0) need the request's `:path` only (the route and the OpenAI API it
//! targets); their headers phase reads that one header instead of the whole map.

use llm_forward_core::config::{FilterConfig, RouteKind};

#[derive(Debug, Default)]
pub struct IdleRoutes {
    /// Per route (config order): no feature touches its requests.
    routes: Vec<bool>,
    /// Every route is idle or counts usage metrics only: the headers phase needs the route and
    /// the path, so it reads `:path` alone.
    path_only: bool,
    /// The only route, when it is `/` and idle: every request is its request, no read at all.
    catch_all: Option<usize>,
}

impl IdleRoutes {
    pub fn of(config: &FilterConfig) -> IdleRoutes {
        // Features that act on every route: access (keys, IP lists, per-route key locations and
        // model rules), limits (local or fleet-wide), the response cache. Chat logs and usage
        // metrics act on `openai` routes only.
        let global = config.access.is_open()
            && config.limits.is_empty()
            && config.ratelimit.is_none()
            && config.cache.is_none();
        let logging = config.logging.chat || config.logging.metrics;
        let routes: Vec<bool> = config
            .routes
            .iter()
            .map(|r| global && !(r.kind == RouteKind::Openai && logging))
            .collect();
        let all = routes.iter().all(|idle| *idle);
        let catch_all = match config.routes.as_slice() {
            [only] if all && only.prefix == "/" => Some(0),
            _ => None,
        };
        // Usage metrics alone read the path (the API), the answer and the caller's level, which
        // open access sets to 0 without reading a header. The chat record reads the method.
        let path_only = all || (global && !config.logging.chat);
        IdleRoutes {
            routes,
            path_only,
            catch_all,
        }
    }

    pub fn route(&self, route: usize) -> bool {
        self.routes.get(route).copied().unwrap_or(false)
    }

    /// The request side of every route needs `:path` and nothing else from the request headers
    /// (every route is idle or counts usage metrics only).
    pub fn path_only(&self) -> bool {
        self.path_only
    }

    /// The route of every request, known without reading it (Envoy's `:path` starts with `/` for
    /// every request a route can match; `OPTIONS *` and CONNECT are counted here too).
    pub fn catch_all(&self) -> Option<usize> {
        self.catch_all
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::IdleRoutes;
    use llm_forward_core::config::FilterConfig;

    fn of(json: &str) -> IdleRoutes {
        IdleRoutes::of(&FilterConfig::from_json(json.as_bytes()).unwrap())
    }

    #[test]
    fn only_routes_no_feature_touches_are_idle() {
        let quiet = r#""logging":{"chat":false,"metrics":false}"#;
        let idle = of(&format!(
            r#"{{"routes":[{{"prefix":"/","name":"root","type":"openai"}}],{quiet}}}"#
        ));
        assert!(idle.route(0) && idle.path_only());
        assert_eq!(idle.catch_all(), Some(0));
        // Usage metrics (on by default) act on openai routes, not on general ones; they need the
        // path only.
        let idle = of(r#"{"routes":[{"prefix":"/","name":"root","type":"openai"},
            {"prefix":"/gen","name":"gen","type":"general"}]}"#);
        assert!(!idle.route(0) && idle.route(1) && idle.path_only());
        assert_eq!(idle.catch_all(), None);
        // The chat record needs more (method, body): the whole map is read.
        let idle = of(r#"{"routes":[{"prefix":"/","name":"root","type":"openai"},
            {"prefix":"/gen","name":"gen","type":"general"}],"logging":{"chat":true}}"#);
        assert!(!idle.route(0) && idle.route(1) && !idle.path_only());
        // Chat logs act on openai routes only: general routes alone stay idle.
        let idle = of(
            r#"{"routes":[{"prefix":"/gen","name":"gen","type":"general"}],
            "logging":{"chat":true}}"#,
        );
        assert!(idle.route(0) && idle.path_only());
        // Two idle routes: the path must still be read to count the right one.
        let idle = of(&format!(
            r#"{{"routes":[{{"prefix":"/","name":"root","type":"general"}},
            {{"prefix":"/gen","name":"gen","type":"general"}}],{quiet}}}"#
        ));
        assert!(idle.path_only());
        assert_eq!(idle.catch_all(), None);
        let limited = of(&format!(
            r#"{{"routes":[{{"prefix":"/","name":"root","type":"general"}}],{quiet},
            "limits":{{"requests":[{{"path":"/","limit":"1/minute","per":"ip"}}]}}}}"#
        ));
        assert!(!limited.route(0) && limited.catch_all().is_none() && !limited.path_only());
        let denied = of(
            r#"{"routes":[{"prefix":"/","name":"root","type":"general"}],
            "access":{"ip_deny":["10.0.0.0/8"]}}"#,
        );
        assert!(!denied.route(0) && !denied.path_only());
        // Metrics plus any other feature: the whole map.
        let keyed = of(r#"{"routes":[{"prefix":"/","name":"root","type":"openai"}],
            "access":{"forward_keys":[{"name":"a","key":"fk-a","level":0}]}}"#);
        assert!(!keyed.route(0) && !keyed.path_only());
    }
}
