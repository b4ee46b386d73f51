//! The worker's memory budget: request bodies the filter holds (and their parsed form, estimated
//! by `llm_forward_core::memory::json_parse_cost`) and paced-stream queues, per HTTP context.
//!
//! A wasm VM has one heap per worker; when it runs out the VM traps and every request of the
//! worker fails until Envoy reloads it. So each context reserves what it is about to hold, and a
//! reservation that would pass `server.worker_memory_budget_bytes` is refused: the caller then
//! answers 413 (the body must be read) or goes on without holding (reading was optional).
//! `llm_forward.memory.over_budget_total` counts the refusals.

use crate::host;
use proxy_wasm::types::MetricType;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// What a reservation is for (a context may hold both at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Use {
    /// The request body (and its parsed form).
    RequestBody,
    /// Response events a paced stream keeps queued.
    PacedQueue,
}

#[derive(Debug, Default)]
pub struct MemoryBudget {
    limit: u64,
    used: Cell<u64>,
    held: RefCell<HashMap<(u32, Use), u64>>,
    over_budget: Option<u32>,
}

impl MemoryBudget {
    pub fn configure(limit: u64) -> MemoryBudget {
        MemoryBudget {
            limit,
            over_budget: host::define_metric(
                MetricType::Counter,
                "llm_forward.memory.over_budget_total",
            )
            .ok(),
            ..MemoryBudget::default()
        }
    }

    /// Sets what `context` holds for `what` to `bytes`. False (and nothing changed, the refusal
    /// counted) when the worker's total would pass the budget; shrinking always succeeds.
    pub fn reserve(&self, context: u32, what: Use, bytes: u64) -> bool {
        let Ok(mut held) = self.held.try_borrow_mut() else {
            return false;
        };
        let before = held.get(&(context, what)).copied().unwrap_or(0);
        let total = self.used.get().saturating_sub(before).saturating_add(bytes);
        if bytes > before && total > self.limit {
            if let Some(id) = self.over_budget {
                let _ = host::increment_metric(id, 1);
            }
            return false;
        }
        if bytes == 0 {
            held.remove(&(context, what));
        } else {
            held.insert((context, what), bytes);
        }
        self.used.set(total);
        true
    }

    /// Whether `bytes` more would fit now (nothing reserved, nothing counted).
    pub fn fits(&self, context: u32, what: Use, bytes: u64) -> bool {
        let before = self
            .held
            .try_borrow()
            .ok()
            .and_then(|h| h.get(&(context, what)).copied())
            .unwrap_or(0);
        self.used.get().saturating_sub(before).saturating_add(bytes) <= self.limit
    }

    /// Counts a refusal decided without a reservation (a `fits` that said no).
    pub fn count_refusal(&self) {
        if let Some(id) = self.over_budget {
            let _ = host::increment_metric(id, 1);
        }
    }

    /// Everything `context` held is free again (the request ended).
    pub fn release(&self, context: u32) {
        for what in [Use::RequestBody, Use::PacedQueue] {
            self.reserve(context, what, 0);
        }
    }
}
