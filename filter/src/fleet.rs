//! Fleet-wide limits: the gRPC calls to the rate-limit service (`llm_forward_core::limits::fleet`
//! builds and reads the messages).
//!
//! - Admission: one `ShouldRateLimit` call per request with the token-quota descriptors (addend 0,
//!   check only) and the request-limit descriptors (addend 1); the request is held until it
//!   answers (bounded by `limits.timeout_ms`, Envoy enforces the deadline).
//! - Charge: after the response, a call with only the token descriptors and the tokens used as
//!   addend. It is dispatched as the root context (`set_effective_context`), so the end of the HTTP
//!   stream does not cancel it; its answer is ignored.
//! - Every failure (no cluster, gRPC status, garbage, timeout) becomes `limits.failure_mode`.
//!
//! The SDK's `dispatch_grpc_call` panics on any host status other than Ok, ParseFailure and
//! InternalFailure, and Envoy's `grpcCall` documents `BadArgument` for an unknown cluster (Envoy
//! 1.40 here answered without trapping, but the SDK gives no guarantee). So each worker first
//! probes the cluster once through the raw ABI, which returns the status instead (see
//! [`ClusterProbe::cluster_exists`]), and logs a clear error when it is missing.

use crate::host;
use llm_forward_core::limits::fleet::{
    decode_response, encode_request, verdict, Descriptor, FleetSettings, Verdict, METHOD, SERVICE,
};
use proxy_wasm::types::BufferType;
use std::cell::Cell;
use std::time::Duration;

/// Whether this worker has seen the cluster: unknown, present, missing.
#[derive(Debug, Default)]
pub struct ClusterProbe(Cell<Option<bool>>);

/// One raw call (its answer reaches no context: the SDK did not register it) with an empty
/// request, only to learn whether Envoy knows the cluster. An empty `RateLimitRequest` counts
/// nothing in any rate-limit service.
fn probe(settings: &FleetSettings) -> bool {
    let message = encode_request(&settings.domain, &[]);
    host::grpc_call_accepted(
        &settings.cluster,
        SERVICE,
        METHOD,
        &message,
        Duration::from_millis(settings.timeout_ms),
    )
}

impl ClusterProbe {
    /// Whether `dispatch_grpc_call` can be called without the SDK panicking.
    pub fn cluster_exists(&self, settings: &FleetSettings) -> bool {
        if let Some(known) = self.0.get() {
            return known;
        }
        let exists = probe(settings);
        if !exists {
            crate::host::log(
                proxy_wasm::types::LogLevel::Error,
                &format!(
                    "llm-forward: the rate-limit cluster `{}` is missing; limits.failure_mode applies",
                    settings.cluster
                ),
            );
        }
        self.0.set(Some(exists));
        exists
    }
}

/// Sends one `ShouldRateLimit` call from the current context; `None` when it could not be sent.
pub fn dispatch(
    probe: &ClusterProbe,
    settings: &FleetSettings,
    descriptors: &[Descriptor],
) -> Option<u32> {
    if !probe.cluster_exists(settings) {
        return None;
    }
    let message = encode_request(&settings.domain, descriptors);
    host::dispatch_grpc_call(
        &settings.cluster,
        SERVICE,
        METHOD,
        Vec::new(),
        Some(&message),
        Duration::from_millis(settings.timeout_ms),
    )
    .ok()
}

/// Sends a charge as the root context, so it outlives this HTTP stream; then makes this context
/// effective again. Returns whether it was sent.
pub fn dispatch_detached(
    probe: &ClusterProbe,
    settings: &FleetSettings,
    descriptors: &[Descriptor],
    root_id: u32,
    context_id: u32,
) -> bool {
    if root_id == 0 || host::set_effective_context(root_id).is_err() {
        return dispatch(probe, settings, descriptors).is_some();
    }
    let sent = dispatch(probe, settings, descriptors).is_some();
    let _ = host::set_effective_context(context_id);
    sent
}

/// Reads the answer to an admission call: `None` when the service failed (gRPC status, garbage,
/// an unknown code), so the failure mode applies.
pub fn read_answer(
    status_code: u32,
    size: usize,
    sent: &[Descriptor],
    now_ms: u64,
) -> Option<Verdict> {
    if status_code != 0 {
        return None;
    }
    let bytes = host::get_buffer(BufferType::GrpcReceiveBuffer, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default();
    let response = decode_response(&bytes)?;
    verdict(&response, sent, now_ms)
}
