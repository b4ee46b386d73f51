//! Crosses into the VM for request and response headers and returns at once: the floor of any
//! wasm design. With a plugin configuration `"<probe> <n>"` it instead repeats one host call `n`
//! times per request, so `bench/probe.py` can price each kind of call (see its docstring).

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot { probe: Rc::new(Probe::default()) }) });
}}

#[derive(Default)]
struct Probe {
    name: String,
    n: usize,
    metric: u32,
}

struct NoopRoot {
    probe: Rc<Probe>,
}

impl Context for NoopRoot {}
impl RootContext for NoopRoot {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&config);
        let mut words = text.split_whitespace();
        let name = words.next().unwrap_or("").to_string();
        let n = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        let metric = hostcalls::define_metric(MetricType::Counter, "probe.total").unwrap_or(0);
        self.probe = Rc::new(Probe { name, n, metric });
        true
    }
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop {
            probe: self.probe.clone(),
        }))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Noop {
    probe: Rc<Probe>,
}

impl Noop {
    fn run(&self, phase: &str, body_size: usize) {
        let p = &*self.probe;
        for i in 0..p.n {
            match (p.name.as_str(), phase) {
                ("request_map", "request") => {
                    let _ = hostcalls::get_map_bytes(MapType::HttpRequestHeaders);
                }
                ("request_header", "request") => {
                    let _ = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, ":path");
                }
                ("set_request_header", "request") => {
                    let _ = hostcalls::set_map_value_bytes(
                        MapType::HttpRequestHeaders,
                        "x-probe",
                        Some(b"v"),
                    );
                }
                ("add_response_header", "response") => {
                    let _ = hostcalls::add_map_value_bytes(
                        MapType::HttpResponseHeaders,
                        "x-probe",
                        b"v",
                    );
                }
                ("set_response_header", "response") => {
                    let _ = hostcalls::set_map_value_bytes(
                        MapType::HttpResponseHeaders,
                        "x-probe",
                        Some(b"v"),
                    );
                }
                ("response_map", "response") => {
                    let _ = hostcalls::get_map_bytes(MapType::HttpResponseHeaders);
                }
                ("property", "request") => {
                    let _ = hostcalls::get_property(vec!["source", "address"]);
                }
                ("set_property", "response") => {
                    let _ = hostcalls::set_property(vec!["wasm", "probe"], Some(b"{\"a\":1}"));
                }
                ("shared_get", "request") => {
                    let _ = hostcalls::get_shared_data("probe");
                }
                ("shared_cas", "request") => {
                    let (v, cas) = hostcalls::get_shared_data("probe").unwrap_or((None, None));
                    let mut n = v.map_or(0u64, |b| b.iter().fold(0, |a, x| a * 31 + *x as u64));
                    n += i as u64;
                    let _ = hostcalls::set_shared_data("probe", Some(&n.to_le_bytes()), cas);
                }
                ("metric", "request") => {
                    let _ = hostcalls::increment_metric(p.metric, 1);
                }
                ("clock", "request") => {
                    let _ = hostcalls::get_current_time();
                }
                ("response_body", "body") if body_size > 0 => {
                    let _ = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size);
                }
                _ => return,
            }
        }
    }
}

impl Context for Noop {}
impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        self.run("request", 0);
        Action::Continue
    }
    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.run("response", 0);
        Action::Continue
    }
    fn on_http_response_body(&mut self, size: usize, _: bool) -> Action {
        self.run("body", size);
        Action::Continue
    }
}
