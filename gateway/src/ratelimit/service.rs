//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`: plan the request, run the script
//! under the Redis deadline, answer. Bad requests → `INVALID_ARGUMENT`; Redis down, slow or
//! answering garbage → `UNAVAILABLE` (the caller applies its failure mode). Never panics.

use super::config::RlsConfig;
use super::plan::{plan, Check, Planned};
use super::script::{Decision, LimitScript, Outcome};
use crate::redis_client::Redis;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as ProtoDuration;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::{Request, Response, Status};

pub struct Service {
    redis: Redis,
    script: LimitScript,
    deadline: Duration,
    config: Option<RlsConfig>,
    /// Unix second of the last Redis error logged (one line per second at most under an outage).
    last_logged: AtomicU64,
}

impl Service {
    pub fn new(redis: Redis, deadline: Duration, config: Option<RlsConfig>) -> Service {
        Service {
            redis,
            script: LimitScript::default(),
            deadline,
            config,
            last_logged: AtomicU64::new(0),
        }
    }

    fn log_backend_error(&self, e: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if self.last_logged.swap(now, Ordering::Relaxed) != now {
            eprintln!("llm-forward ratelimit: {e} (answering UNAVAILABLE)");
        }
    }

    /// The decision for a planned request (without gRPC types, for tests and benches).
    pub async fn decide(&self, req: &RateLimitRequest) -> Result<RateLimitResponse, Status> {
        let planned = plan(req, self.config.as_ref()).map_err(Status::invalid_argument)?;
        let checks: Vec<&Check> = planned
            .iter()
            .filter_map(|p| match p {
                Planned::Check(c) => Some(c),
                Planned::NoLimit => None,
            })
            .collect();
        let decision = if checks.is_empty() {
            Decision {
                over: false,
                outcomes: Vec::new(),
            }
        } else {
            let mut conn = self.redis.connection();
            match self
                .redis
                .bounded(self.deadline, self.script.run(&mut conn, &checks))
                .await
            {
                Ok(d) => d,
                Err(e) => {
                    self.log_backend_error(&e);
                    return Err(Status::unavailable("rate-limit backend unavailable"));
                }
            }
        };
        Ok(response(&planned, &decision))
    }
}

fn response(planned: &[Planned], decision: &Decision) -> RateLimitResponse {
    let mut outcomes = decision.outcomes.iter();
    let statuses = planned
        .iter()
        .map(|p| match p {
            Planned::NoLimit => DescriptorStatus {
                code: Code::Ok as i32,
                ..Default::default()
            },
            Planned::Check(c) => {
                let o = outcomes.next().copied().unwrap_or(Outcome {
                    over: false,
                    remaining: 0,
                    reset_ms: 0,
                });
                DescriptorStatus {
                    code: if o.over { Code::OverLimit } else { Code::Ok } as i32,
                    current_limit: Some(RateLimit {
                        name: String::new(),
                        requests_per_unit: c.limit,
                        unit: c.unit,
                    }),
                    limit_remaining: u32::try_from(o.remaining).unwrap_or(u32::MAX),
                    duration_until_reset: Some(proto_duration(o.reset_ms)),
                    quota: None,
                }
            }
        })
        .collect();
    RateLimitResponse {
        overall_code: if decision.over {
            Code::OverLimit
        } else {
            Code::Ok
        } as i32,
        statuses,
        ..Default::default()
    }
}

fn proto_duration(ms: u64) -> ProtoDuration {
    ProtoDuration {
        seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
        // < 1e9, fits.
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        self.decide(request.get_ref()).await.map(Response::new)
    }
}
