//! Live metrics for the console: Envoy admin counters sampled on demand, turned into rates by
//! differencing with the previous sample (kept here, server-side), with a short history for charts.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Only the counters the console shows (a regex Envoy's admin applies before answering).
pub const STATS_FILTER: &str = r"^(http\.llm_forward\.downstream_rq_(total|[2345]xx)|wasmcustom\.llm_forward\.(usage|cache)\.)";

/// Points kept for the charts (at one sample every ≥ 2 s: several minutes).
pub const HISTORY: usize = 180;
/// Samples closer than this to the previous one reuse it (several open tabs cost one fetch).
pub const MIN_INTERVAL_MS: u64 = 1500;

/// Counter values by full Envoy stat name, from `/stats?format=json`.
pub fn parse_stats_json(body: &[u8]) -> Result<HashMap<String, u64>, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    for s in v
        .get("stats")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
    {
        if let (Some(name), Some(value)) = (
            s.get("name").and_then(|n| n.as_str()),
            s.get("value").and_then(|n| n.as_u64()),
        ) {
            out.insert(name.to_string(), value);
        }
    }
    Ok(out)
}

/// One usage series: route × model × level.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct SeriesKey {
    pub route: String,
    pub model: String,
    pub level: String,
}

impl SeriesKey {
    pub fn label(&self) -> String {
        format!("{} · {} · L{}", self.route, self.model, self.level)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// The counters of one sample, grouped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub requests: u64,
    pub rq_4xx: u64,
    pub rq_5xx: u64,
    pub cache_hit: u64,
    pub cache_miss: u64,
    pub cache_bypass: u64,
    pub usage: BTreeMap<SeriesKey, Usage>,
}

pub fn totals(stats: &HashMap<String, u64>) -> Totals {
    let get = |n: &str| stats.get(n).copied().unwrap_or(0);
    let mut t = Totals {
        requests: get("http.llm_forward.downstream_rq_total"),
        rq_4xx: get("http.llm_forward.downstream_rq_4xx"),
        rq_5xx: get("http.llm_forward.downstream_rq_5xx"),
        cache_hit: get("wasmcustom.llm_forward.cache.hit_total"),
        cache_miss: get("wasmcustom.llm_forward.cache.miss_total"),
        cache_bypass: get("wasmcustom.llm_forward.cache.bypass_total"),
        usage: BTreeMap::new(),
    };
    for (name, value) in stats {
        // wasmcustom.llm_forward.usage.<route>.<model>.<level>.<what>_total; labels hold no dots.
        let Some(rest) = name.strip_prefix("wasmcustom.llm_forward.usage.") else {
            continue;
        };
        let parts: Vec<&str> = rest.split('.').collect();
        let [route, model, level, what] = parts.as_slice() else {
            continue;
        };
        let key = SeriesKey {
            route: route.to_string(),
            model: model.to_string(),
            level: level.to_string(),
        };
        let u = t.usage.entry(key).or_default();
        match *what {
            "requests_total" => u.requests = *value,
            "prompt_tokens_total" => u.prompt_tokens = *value,
            "completion_tokens_total" => u.completion_tokens = *value,
            _ => {}
        }
    }
    t
}

/// Rates between two samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Point {
    /// Unix seconds of the newer sample.
    pub t: f64,
    pub rps: f64,
    pub rps_4xx: f64,
    pub rps_5xx: f64,
    pub cache_hits: f64,
    pub cache_misses: f64,
    /// Tokens (prompt + completion) per minute per series label.
    pub tpm: BTreeMap<String, f64>,
}

pub fn point(prev: &Totals, now: &Totals, seconds: f64, t: f64) -> Point {
    let secs = seconds.max(0.001);
    // Counters only grow; a restart of Envoy resets them, which must not give negative rates.
    let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
    let mut tpm = BTreeMap::new();
    for (k, u) in &now.usage {
        let before = prev.usage.get(k).cloned().unwrap_or_default();
        let tokens = (u.prompt_tokens + u.completion_tokens)
            .saturating_sub(before.prompt_tokens + before.completion_tokens);
        tpm.insert(k.label(), tokens as f64 * 60.0 / secs);
    }
    Point {
        t,
        rps: rate(prev.requests, now.requests),
        rps_4xx: rate(prev.rq_4xx, now.rq_4xx),
        rps_5xx: rate(prev.rq_5xx, now.rq_5xx),
        cache_hits: rate(prev.cache_hit, now.cache_hit),
        cache_misses: rate(prev.cache_miss, now.cache_miss),
        tpm,
    }
}

/// Server-side sampler state.
#[derive(Default)]
pub struct Sampler {
    prev: Option<(u64, Totals)>,
    pub history: VecDeque<Point>,
}

impl Sampler {
    /// Whether a new sample is due at `now_ms`.
    pub fn due(&self, now_ms: u64) -> bool {
        match &self.prev {
            Some((at, _)) => now_ms.saturating_sub(*at) >= MIN_INTERVAL_MS,
            None => true,
        }
    }

    pub fn add(&mut self, now_ms: u64, totals: Totals) {
        if let Some((at, prev)) = &self.prev {
            let secs = now_ms.saturating_sub(*at) as f64 / 1000.0;
            let p = point(prev, &totals, secs, now_ms as f64 / 1000.0);
            self.history.push_back(p);
            while self.history.len() > HISTORY {
                self.history.pop_front();
            }
        }
        self.prev = Some((now_ms, totals));
    }

    pub fn latest(&self) -> Option<&Totals> {
        self.prev.as_ref().map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn parses_envoy_json_and_groups_usage_series() {
        let body = br#"{"stats":[{"name":"http.llm_forward.downstream_rq_total","value":7},
            {"name":"wasmcustom.llm_forward.usage.root.gpt-4o.1.prompt_tokens_total","value":30},
            {"name":"wasmcustom.llm_forward.usage.root.gpt-4o.1.completion_tokens_total","value":12},
            {"name":"wasmcustom.llm_forward.usage.root.gpt-4o.1.requests_total","value":3},
            {"histograms":{"supported_quantiles":[]}}]}"#;
        let t = totals(&parse_stats_json(body).unwrap());
        assert_eq!(t.requests, 7);
        let key = SeriesKey {
            route: "root".into(),
            model: "gpt-4o".into(),
            level: "1".into(),
        };
        assert_eq!(
            t.usage[&key],
            Usage {
                requests: 3,
                prompt_tokens: 30,
                completion_tokens: 12
            }
        );
        assert_eq!(key.label(), "root · gpt-4o · L1");
    }

    #[test]
    fn rates_come_from_the_previous_sample_and_never_go_negative() {
        let mut s = Sampler::default();
        assert!(s.due(0));
        s.add(
            1_000,
            totals(&stats(&[
                ("http.llm_forward.downstream_rq_total", 10),
                (
                    "wasmcustom.llm_forward.usage.root.m.0.prompt_tokens_total",
                    100,
                ),
            ])),
        );
        assert!(s.history.is_empty(), "one sample gives no rate yet");
        assert!(!s.due(2_000));
        assert!(s.due(2_500));
        s.add(
            3_000,
            totals(&stats(&[
                ("http.llm_forward.downstream_rq_total", 30),
                ("http.llm_forward.downstream_rq_5xx", 4),
                (
                    "wasmcustom.llm_forward.usage.root.m.0.prompt_tokens_total",
                    160,
                ),
                (
                    "wasmcustom.llm_forward.usage.root.m.0.completion_tokens_total",
                    40,
                ),
            ])),
        );
        let p = &s.history[0];
        assert_eq!(p.rps, 10.0);
        assert_eq!(p.rps_5xx, 2.0);
        assert_eq!(p.tpm["root · m · L0"], 100.0 * 60.0 / 2.0);
        // Envoy restarted: counters went down.
        s.add(
            5_000,
            totals(&stats(&[("http.llm_forward.downstream_rq_total", 1)])),
        );
        assert_eq!(s.history[1].rps, 0.0);
    }
}
