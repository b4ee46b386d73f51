//! The service over real gRPC (tonic client) against a real `redis-server`.

use super::*;
use crate::redis_server::RedisServer;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
    Entry, RateLimitOverride,
};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::UInt64Value;
use std::time::Instant;
use tonic::transport::Channel;

const MINUTE: i32 = 2;
const HOUR: i32 = 3;

fn d(entries: &[(&str, &str)], limit: u32, unit: i32, addend: Option<u64>) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(k, v)| Entry {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
        limit: Some(RateLimitOverride {
            requests_per_unit: limit,
            unit,
        }),
        hits_addend: addend.map(|value| UInt64Value { value }),
        is_negative_hits: false,
    }
}

fn req(descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
    RateLimitRequest {
        domain: "llm-forward".into(),
        descriptors,
        hits_addend: 0,
    }
}

/// A service with a generous Redis deadline: these tests are about semantics, and a loaded CI
/// machine must not turn a slow answer into UNAVAILABLE. The deadline itself is tested with the
/// default in `redis_down_or_stalled_is_unavailable_quickly_and_recovers`.
async fn start(redis_url: &str) -> RateLimitServer {
    start_with_timeout(redis_url, Duration::from_secs(2)).await
}

async fn start_with_timeout(redis_url: &str, timeout: Duration) -> RateLimitServer {
    let mut options = Options::new(Listen::Tcp("127.0.0.1:0".into()), redis_url);
    options.redis_timeout = timeout;
    RateLimitServer::start(options).await.unwrap()
}

async fn client(server: &RateLimitServer) -> RateLimitServiceClient<Channel> {
    let BoundAddr::Tcp(addr) = server.addr() else {
        panic!("tcp expected")
    };
    RateLimitServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

async fn call(
    c: &mut RateLimitServiceClient<Channel>,
    r: RateLimitRequest,
) -> Result<RateLimitResponse, tonic::Status> {
    c.should_rate_limit(r).await.map(|r| r.into_inner())
}

fn ok(r: &RateLimitResponse) -> bool {
    r.overall_code == Code::Ok as i32
}

fn codes(r: &RateLimitResponse) -> Vec<i32> {
    r.statuses.iter().map(|s| s.code).collect()
}

/// A raw Redis command from the test itself (to seed or inspect counters).
async fn redis_cmd<T: redis::FromRedisValue>(url: &str, cmd: &redis::Cmd) -> T {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    cmd.query_async(&mut conn).await.unwrap()
}

fn rule(n: &str) -> [(&'static str, String); 2] {
    [
        ("rule", format!("requests:{n}:0")),
        ("subject", "all".to_string()),
    ]
}

fn entries<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_on_two_instances_admit_exactly_the_limit() {
    let redis = RedisServer::start();
    let a = start(&redis.url()).await;
    let b = start(&redis.url()).await;
    let (ca, cb) = (client(&a).await, client(&b).await);
    let r = rule("aa");
    let mut tasks = Vec::new();
    for i in 0..64 {
        let mut c = if i % 2 == 0 { ca.clone() } else { cb.clone() };
        let request = req(vec![d(&entries(&r), 10, MINUTE, None)]);
        tasks.push(tokio::spawn(async move { call(&mut c, request).await }));
    }
    let mut passed = 0;
    for t in tasks {
        let resp = t.await.unwrap().unwrap();
        assert_eq!(resp.statuses.len(), 1);
        let s = &resp.statuses[0];
        let limit = s.current_limit.as_ref().unwrap();
        assert_eq!((limit.requests_per_unit, limit.unit), (10, MINUTE));
        let reset = s.duration_until_reset.as_ref().unwrap();
        assert!(reset.seconds <= 60 && reset.seconds >= 0);
        if ok(&resp) {
            passed += 1;
        } else {
            assert_eq!(s.limit_remaining, 0);
        }
    }
    assert_eq!(passed, 10, "one budget across two services");
    // Refused requests consumed nothing: the counter is exactly the limit.
    let keys: Vec<String> =
        redis_cmd(&redis.url(), redis::cmd("KEYS").arg("llm-forward:rl:*")).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let count: i64 = redis_cmd(&redis.url(), redis::cmd("GET").arg(&keys[0])).await;
    assert_eq!(count, 10);
    let ttl: i64 = redis_cmd(&redis.url(), redis::cmd("PTTL").arg(&keys[0])).await;
    assert!(ttl > 0 && ttl <= 61_000, "{ttl}");
}

#[tokio::test]
async fn token_quota_checks_before_and_charges_after() {
    let redis = RedisServer::start();
    let s = start(&redis.url()).await;
    let mut c = client(&s).await;
    let t = [
        ("rule", "tokens:bb:0".to_string()),
        ("subject", "name:k1".to_string()),
    ];
    let check = || req(vec![d(&entries(&t), 100, HOUR, Some(0))]);
    let charge = |n| req(vec![d(&entries(&t), 100, HOUR, Some(n))]);
    // Admission with addend 0 counts nothing.
    for _ in 0..3 {
        let r = call(&mut c, check()).await.unwrap();
        assert!(ok(&r));
        assert_eq!(r.statuses[0].limit_remaining, 100);
    }
    // Charges are always added, even past the budget.
    assert_eq!(
        call(&mut c, charge(60)).await.unwrap().statuses[0].limit_remaining,
        40
    );
    let r = call(&mut c, charge(60)).await.unwrap();
    assert!(
        ok(&r),
        "the count before this charge (60) was under the quota"
    );
    assert_eq!(r.statuses[0].limit_remaining, 0);
    // The budget is spent: the next admission is refused, and a charge still counts.
    let r = call(&mut c, check()).await.unwrap();
    assert!(!ok(&r));
    assert_eq!(codes(&r), vec![Code::OverLimit as i32]);
    let r = call(&mut c, charge(5)).await.unwrap();
    assert!(!ok(&r));
    let keys: Vec<String> =
        redis_cmd(&redis.url(), redis::cmd("KEYS").arg("llm-forward:rl:*")).await;
    let count: i64 = redis_cmd(&redis.url(), redis::cmd("GET").arg(&keys[0])).await;
    assert_eq!(count, 125, "every charge was added");
}

#[tokio::test]
async fn a_refused_request_consumes_nothing_from_its_other_limits() {
    let redis = RedisServer::start();
    let s = start(&redis.url()).await;
    let mut c = client(&s).await;
    let wide = rule("wide");
    let narrow = [
        ("rule", "requests:narrow:0".to_string()),
        ("subject", "name:k".to_string()),
    ];
    let tokens = [
        ("rule", "tokens:t:0".to_string()),
        ("subject", "name:k".to_string()),
    ];
    let both = || {
        req(vec![
            d(&entries(&wide), 5, MINUTE, None),
            d(&entries(&narrow), 2, MINUTE, None),
            d(&entries(&tokens), 1000, MINUTE, Some(0)),
        ])
    };
    for _ in 0..2 {
        assert!(ok(&call(&mut c, both()).await.unwrap()));
    }
    for _ in 0..3 {
        let r = call(&mut c, both()).await.unwrap();
        assert!(!ok(&r));
        assert_eq!(
            codes(&r),
            vec![Code::Ok as i32, Code::OverLimit as i32, Code::Ok as i32]
        );
        assert_eq!(r.statuses[0].limit_remaining, 3, "wide was not counted");
    }
    // The wide limit alone still has its 3 remaining.
    for left in [2, 1, 0] {
        let r = call(&mut c, req(vec![d(&entries(&wide), 5, MINUTE, None)]))
            .await
            .unwrap();
        assert!(ok(&r));
        assert_eq!(r.statuses[0].limit_remaining, left);
    }
    assert!(!ok(&call(
        &mut c,
        req(vec![d(&entries(&wide), 5, MINUTE, None)])
    )
    .await
    .unwrap()));
}

#[tokio::test]
async fn negative_hits_give_back_and_never_go_below_zero() {
    let redis = RedisServer::start();
    let s = start(&redis.url()).await;
    let mut c = client(&s).await;
    let r = rule("refund");
    let take = |n| req(vec![d(&entries(&r), 10, MINUTE, Some(n))]);
    let give = |n| {
        let mut one = d(&entries(&r), 10, MINUTE, Some(n));
        one.is_negative_hits = true;
        req(vec![one])
    };
    assert_eq!(
        call(&mut c, take(8)).await.unwrap().statuses[0].limit_remaining,
        2
    );
    let back = call(&mut c, give(5)).await.unwrap();
    assert!(ok(&back));
    assert_eq!(back.statuses[0].limit_remaining, 7);
    assert_eq!(
        call(&mut c, give(50)).await.unwrap().statuses[0].limit_remaining,
        10
    );
    assert_eq!(
        call(&mut c, take(10)).await.unwrap().statuses[0].limit_remaining,
        0
    );
    assert!(!ok(&call(&mut c, take(1)).await.unwrap()));
}

#[tokio::test]
async fn window_ms_sets_the_window_and_the_counter_expires() {
    let redis = RedisServer::start();
    let s = start(&redis.url()).await;
    let mut c = client(&s).await;
    let r = [
        ("rule", "requests:w:0".to_string()),
        ("subject", "all".to_string()),
        ("window_ms", "1500".to_string()),
    ];
    let one = || req(vec![d(&entries(&r), 2, 0, None)]);
    // Start right after a window boundary would make this test depend on timing; instead, wait
    // until a call is admitted after a refusal (bounded), which only a new window allows.
    let mut refused = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = call(&mut c, one()).await.unwrap();
        let s = &resp.statuses[0];
        assert_eq!(
            s.current_limit.as_ref().unwrap().unit,
            0,
            "no unit for 1.5 s"
        );
        let reset = s.duration_until_reset.as_ref().unwrap();
        assert!(reset.seconds * 1000 + i64::from(reset.nanos / 1_000_000) <= 1500);
        if !ok(&resp) {
            refused = true;
        } else if refused {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the 1.5 s window never rolled over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let keys: Vec<String> =
        redis_cmd(&redis.url(), redis::cmd("KEYS").arg("llm-forward:rl:*")).await;
    assert!(keys.iter().all(|k| k.contains(":1500:")), "{keys:?}");
    for k in &keys {
        let ttl: i64 = redis_cmd(&redis.url(), redis::cmd("PTTL").arg(k)).await;
        assert!(ttl <= 2500, "expires a second after its window: {ttl}");
    }
}

#[tokio::test]
async fn sliding_windows_weight_the_previous_window() {
    let redis = RedisServer::start();
    let s = start(&redis.url()).await;
    let mut c = client(&s).await;
    // A year-long window: the weight of the previous window is known from Redis's clock and does
    // not move measurably while the test runs.
    let window: u64 = 366 * 24 * 3600 * 1000;
    let r = [
        ("rule", "requests:s:0".to_string()),
        ("subject", "all".to_string()),
        ("window_ms", window.to_string()),
        ("strategy", "sliding".to_string()),
    ];
    // Create the current window's key to learn its name, then seed the previous one.
    let probe = call(&mut c, req(vec![d(&entries(&r), 1_000_000, 0, Some(0))]))
        .await
        .unwrap();
    assert!(ok(&probe));
    let time: Vec<String> = redis_cmd(&redis.url(), &redis::cmd("TIME")).await;
    let now_ms = time[0].parse::<u64>().unwrap() * 1000 + time[1].parse::<u64>().unwrap() / 1000;
    let idx = now_ms / window;
    let elapsed = (now_ms - idx * window) as f64;
    let prev_count = 100u64;
    let weight = (window as f64 - elapsed) / window as f64;
    let used = prev_count as f64 * weight;
    let limit = used.ceil() as u32 + 3;
    let expected = (f64::from(limit) - used).floor() as u32;
    let prefix = plan::counter_key("llm-forward", &d(&entries(&r), 0, 0, None));
    let () = redis_cmd(
        &redis.url(),
        redis::cmd("SET")
            .arg(format!("{prefix}:{window}:{}", idx - 1))
            .arg(prev_count),
    )
    .await;
    let mut admitted = 0;
    for _ in 0..expected + 3 {
        let resp = call(&mut c, req(vec![d(&entries(&r), limit, 0, None)]))
            .await
            .unwrap();
        if ok(&resp) {
            admitted += 1;
        } else {
            // Over: the answer says when one more would pass, i.e. when the previous window's
            // weight has dropped to limit - 1 - current: W - (limit - 1 - current) * W / previous.
            let reset = resp.statuses[0].duration_until_reset.as_ref().unwrap();
            let reset_ms = reset.seconds as f64 * 1000.0 + f64::from(reset.nanos) / 1e6;
            let w = window as f64;
            let at = w - (f64::from(limit) - 1.0 - f64::from(admitted)) * w / prev_count as f64;
            let want = at - elapsed;
            assert!(
                (reset_ms - want).abs() < 60_000.0,
                "reset {reset_ms} ms, expected about {want} ms"
            );
        }
    }
    assert_eq!(
        admitted, expected,
        "limit {limit}, previous window weighs {used:.3}"
    );
    assert!(
        expected < limit,
        "a fixed window would have admitted {limit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_or_stalled_is_unavailable_quickly_and_recovers() {
    let mut redis = RedisServer::start();
    let s = start_with_timeout(&redis.url(), DEFAULT_REDIS_TIMEOUT).await;
    let mut c = client(&s).await;
    let r = rule("down");
    let one = || req(vec![d(&entries(&r), 100, MINUTE, None)]);
    // Spend 60 of the 100 (a loaded machine may miss the 15 ms deadline: retry until answered).
    let spend = wait_ok(&mut c, || req(vec![d(&entries(&r), 100, MINUTE, Some(60))])).await;
    assert!(ok(&spend));

    // Stalled: connections accepted, no answer → the 15 ms deadline answers UNAVAILABLE.
    redis.pause(true).unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let e = call(&mut c, one()).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }
    redis.pause(false).unwrap();
    wait_ok(&mut c, one).await;

    // Killed: refused connections → UNAVAILABLE; restarted on the same port → back by itself.
    redis.kill();
    for _ in 0..3 {
        let t = Instant::now();
        let e = call(&mut c, one()).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }
    redis.restart().unwrap();
    let resp = wait_ok(&mut c, one).await;
    // The windows were lost with the old server: counting starts again (a call that timed out
    // on our side may still have been counted by Redis, hence not exactly 99).
    let remaining = resp.statuses[0].limit_remaining;
    assert!((90..=99).contains(&remaining), "{remaining}");
}

/// Calls until one is answered OK (bounded), returning that answer.
async fn wait_ok(
    c: &mut RateLimitServiceClient<Channel>,
    one: impl Fn() -> RateLimitRequest,
) -> RateLimitResponse {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match call(c, one()).await {
            Ok(r) => return r,
            Err(e) => assert_eq!(e.code(), tonic::Code::Unavailable),
        }
        assert!(Instant::now() < deadline, "the service did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_server_answering_garbage_is_unavailable_not_a_panic() {
    // Something that is not Redis: answers every line with junk.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0
                        || sock
                            .write_all(b"*99999999\r\n$-7\r\n:x\r\n\x00\xff")
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    let s = start(&format!("redis://127.0.0.1:{port}")).await;
    let mut c = client(&s).await;
    for _ in 0..3 {
        let e = call(&mut c, req(vec![d(&[("a", "b")], 1, MINUTE, None)]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable);
    }
}

#[tokio::test]
async fn a_password_in_the_url_logs_in() {
    let redis = RedisServer::try_start_with(&["--requirepass", "s3cret"]).unwrap();
    let url = format!("redis://:s3cret@127.0.0.1:{}", redis.port);
    let s = start(&url).await;
    let mut c = client(&s).await;
    assert!(ok(&call(
        &mut c,
        req(vec![d(&[("p", "1")], 1, MINUTE, None)])
    )
    .await
    .unwrap()));
    let wrong = start(&format!("redis://:wrong@127.0.0.1:{}", redis.port)).await;
    let mut c = client(&wrong).await;
    let e = call(&mut c, req(vec![d(&[("p", "1")], 1, MINUTE, None)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert!(!e.message().contains("wrong"));
}

#[tokio::test]
async fn garbage_requests_get_clean_answers() {
    let redis = RedisServer::start();
    let s = start(&redis.url()).await;
    let mut c = client(&s).await;
    let e = call(&mut c, req(vec![])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = call(&mut c, req(vec![d(&[("a", "b")], 1, 0, None)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    // Zero limit: every counted request is over.
    let r = call(&mut c, req(vec![d(&[("z", "0")], 0, MINUTE, None)]))
        .await
        .unwrap();
    assert!(!ok(&r));
    // No override (and no --config): no limit, OK without current_limit.
    let mut none = d(&[("n", "1")], 0, 0, None);
    none.limit = None;
    let r = call(&mut c, req(vec![none])).await.unwrap();
    assert!(ok(&r));
    assert_eq!(r.statuses[0].current_limit, None);
    // The server is still fine.
    assert!(ok(&call(
        &mut c,
        req(vec![d(&[("a", "b")], 1, MINUTE, None)])
    )
    .await
    .unwrap()));
}

#[tokio::test]
async fn unix_socket_is_private_and_serves() {
    use std::os::unix::fs::PermissionsExt;
    let redis = RedisServer::start();
    let dir = std::env::temp_dir().join(format!("llm-forward-rls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rls.sock");
    let s = RateLimitServer::start(Options::new(Listen::Unix(path.clone()), redis.url()))
        .await
        .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let p = path.clone();
    let channel = tonic::transport::Endpoint::from_static("http://unix")
        .connect_with_connector(UnixConnector(p))
        .await
        .unwrap();
    let mut c = RateLimitServiceClient::new(channel);
    assert!(ok(&call(
        &mut c,
        req(vec![d(&[("u", "1")], 1, MINUTE, None)])
    )
    .await
    .unwrap()));
    drop(s);
    assert!(!path.exists(), "the socket is removed on stop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[derive(Clone)]
struct UnixConnector(std::path::PathBuf);

impl tower_service::Service<tonic::transport::Uri> for UnixConnector {
    type Response = hyper_util::rt::TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: tonic::transport::Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move {
            tokio::net::UnixStream::connect(path)
                .await
                .map(hyper_util::rt::TokioIo::new)
        })
    }
}

#[tokio::test]
async fn config_file_limits_descriptors_without_override() {
    let redis = RedisServer::start();
    let config = config::RlsConfig::parse(
        "domain: edge\ndescriptors:\n  - key: generic_key\n    value: chat\n    rate_limit: {unit: minute, requests_per_unit: 2}\n",
    )
    .unwrap();
    let mut options = Options::new(Listen::Tcp("127.0.0.1:0".into()), redis.url());
    options.redis_timeout = Duration::from_secs(2);
    options.config = Some(config);
    let s = RateLimitServer::start(options).await.unwrap();
    let mut c = client(&s).await;
    let mut native = d(&[("generic_key", "chat")], 0, 0, None);
    native.limit = None;
    let one = || RateLimitRequest {
        domain: "edge".into(),
        descriptors: vec![native.clone()],
        hits_addend: 0,
    };
    assert!(ok(&call(&mut c, one()).await.unwrap()));
    assert!(ok(&call(&mut c, one()).await.unwrap()));
    let r = call(&mut c, one()).await.unwrap();
    assert!(!ok(&r));
    assert_eq!(
        r.statuses[0]
            .current_limit
            .as_ref()
            .unwrap()
            .requests_per_unit,
        2
    );
}

/// Throughput and latency of the service alone (one Redis on loopback, concurrent callers sharing
/// one HTTP/2 connection like Envoy; RLS_BENCH_CALLERS, default 16). Bounded: 20 000 calls.
/// Prints figures, asserts none:
///   cargo test --release -p llm-forward --lib -- --ignored --nocapture ratelimit_throughput
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn ratelimit_throughput() {
    let redis = RedisServer::start();
    let s = start_with_timeout(&redis.url(), DEFAULT_REDIS_TIMEOUT).await;
    let c = client(&s).await;
    let callers: usize = std::env::var("RLS_BENCH_CALLERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=256).contains(n))
        .unwrap_or(16);
    const CALLS: usize = 20_000;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(CALLS / callers);
            let mut unavailable = 0;
            for i in 0..CALLS / callers {
                // Like the filter at admission: a request limit and a token check per call.
                let subject = format!("name:k{}", (caller * 7 + i) % 50);
                let request = req(vec![
                    d(
                        &[("rule", "requests:bench:0"), ("subject", &subject)],
                        1_000_000,
                        MINUTE,
                        None,
                    ),
                    d(
                        &[("rule", "tokens:bench:0"), ("subject", &subject)],
                        1_000_000,
                        HOUR,
                        Some(0),
                    ),
                ]);
                let t = Instant::now();
                if call(&mut c, request).await.is_err() {
                    unavailable += 1;
                }
                latencies.push(t.elapsed());
            }
            (latencies, unavailable)
        }));
    }
    let mut all = Vec::new();
    let mut unavailable = 0;
    for t in tasks {
        let (l, u) = t.await.unwrap();
        all.extend(l);
        unavailable += u;
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "ratelimit: {} calls (2 descriptors each), {callers} concurrent: {:.0} calls/s, p50 {:?}, p99 {:?}, max {:?}, unavailable {unavailable}",
        all.len(),
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        all[all.len() - 1],
    );
}
