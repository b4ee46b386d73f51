//! [`Plugin`]: what every request of a worker shares, built once by the root context's
//! `on_configure` and handed to each request through an `Rc`. Its own module so the features and the
//! HTTP context, which read it, do not import the root context that builds it.

use crate::metrics::Metrics;
use llm_forward_core::config::FilterConfig;

/// What every request of this worker shares, immutable after `on_configure`.
#[derive(Debug)]
pub struct Plugin {
    pub config: FilterConfig,
    pub metrics: Metrics,
    /// Per route × model × level usage counters (chat logs feature), defined lazily.
    pub usage: crate::chatlog::UsageMetrics,
    /// IP lists, keys, model permissions and routing (compiled from `config.access`).
    pub access: crate::access::AccessState,
    /// Response cache counters and the queue of stores the root sends.
    pub cache: crate::cache::CacheShared,
    /// Rate limits, token quotas and pacing: rule ids, counters, paced streams.
    pub limits: crate::limiter::LimitsShared,
    /// Filter-state key of each route's chat record (`llm_forward_log.<route>`), built once.
    pub log_keys: Vec<String>,
    /// Bytes of held bodies and paced queues this worker may keep (`crate::memory`).
    pub memory: crate::memory::MemoryBudget,
    /// Which routes have nothing to do, decided once here (`crate::idle`).
    pub idle: crate::idle::IdleRoutes,
}
