//! OpenAI-Forward compatibility: its `.env` / `openai-forward-config.yaml` and its environment
//! variables, mapped onto `llm-forward.yaml`, and `llm-forward migrate`.
//!
//! How a working folder's OpenAI-Forward config is used (`run`, `render`, `migrate`):
//!
//! 1. [`read_folder`] reads `./openai-forward-config.yaml` when it exists and is not empty (at
//!    OpenAI-Forward's HEAD it *replaces* the env config, so `.env` is then not read), else `./.env`
//!    with python-dotenv's rules. The YAML is turned into the same variables the `.env` would hold.
//! 2. The variables are put into the process environment **only where the real environment does not
//!    set them** (python-dotenv's `override=False`): real environment variables win.
//! 3. [`crate::config_file::apply_env`] then applies every variable on top of `llm-forward.yaml`
//!    ([`crate::openai_forward_env::apply`] does the key, level, IP and cache-folder variables).
//!
//! So the precedence is: built-in defaults < `llm-forward.yaml` < `.env` (or
//! `openai-forward-config.yaml`) < the real environment.
//!
//! Keys never reach the rendered Envoy config: the `n`-th key of `OPENAI_API_KEY_CONFIG` becomes
//! `key: ${LLM_FORWARD_UPSTREAM_KEY_<n>}` and the `n`-th forward key
//! `${LLM_FORWARD_FORWARD_KEY_<n>}`; [`secret_vars`] gives the values those variables must hold, which
//! `run` exports to Envoy (the filter resolves `${VAR}` through `host_env_keys`).

use crate::openai_forward_env::{parse_forward_keys, parse_upstream_keys, secret_vars};
use llm_forward_core::config::{Config, RouteConfig};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// OpenAI-Forward's `.env`.
pub const DOTENV_FILE: &str = ".env";
/// OpenAI-Forward's (HEAD) YAML config; when present it replaces the env config.
pub const YAML_FILE: &str = "openai-forward-config.yaml";

// ---------------------------------------------------------------------------------------------
// Which variables mean what
// ---------------------------------------------------------------------------------------------

/// OpenAI-Forward variables with an llm-forward meaning (see docs/migration.md).
pub const MAPPED: [&str; 22] = [
    "FORWARD_CONFIG",
    "OPENAI_API_KEY_CONFIG",
    "FORWARD_KEY_CONFIG",
    "LEVEL_MODELS",
    "REQ_RATE_LIMIT",
    "GLOBAL_RATE_LIMIT",
    "RATE_LIMIT_STRATEGY",
    "TOKEN_RATE_LIMIT",
    "REQ_RATE_LIMIT_BACKEND",
    "CACHE_OPENAI",
    "CACHE_GENERAL",
    "CACHE_ROUTES",
    "CACHE_BACKEND",
    "CACHE_ROOT_PATH_OR_URL",
    "DEFAULT_REQUEST_CACHING_VALUE",
    "IP_WHITELIST",
    "IP_BLACKLIST",
    "TIMEOUT",
    "LOG_OPENAI",
    // llm-forward's own cache knobs (read by CacheConfig::apply_env).
    "CACHE_TTL_SECONDS",
    "CACHE_PORT",
    "CACHE_REDIS_URL",
];

/// Further variables of our own that may sit in a `.env`.
const OWN: [&str; 5] = [
    "CACHE_PATH",
    "CACHE_SCOPE",
    "CACHE_TIMEOUT_MS",
    "RATE_LIMIT_TIMEOUT_MS",
    "RUST_LOG",
];

/// OpenAI-Forward variables that have no effect here, with what to do instead.
pub fn ignored_advice(key: &str) -> Option<&'static str> {
    Some(match key {
        "PROXY" => "outbound proxies are not supported; run the gateway where it reaches the upstream, or make the proxy a route's base_url if it is a reverse proxy",
        "ITER_CHUNK_TYPE" => "not needed: streamed events are relayed as they arrive; remove it",
        "BENCHMARK_MODE" => "there is no local fake model; point a route at `llm-forward mock` instead",
        "PRINT_CHAT" => "chats are not printed to the console; read the chat logs (LOG_OPENAI=true)",
        "LOG_GENERAL" => "general routes are not logged; remove it",
        "LOG_CACHE_DB_INFO" => "the cache service has no database log; remove it",
        "CUSTOM_MODEL_CONFIG" => "use model routing instead: routes[].models with match, base_url and rename (see docs/access.md)",
        "CUSTOM_GENERAL_ROUTE" => "use routes[].model_paths on the general route",
        "CHAT_COMPLETION_ROUTE" | "COMPLETION_ROUTE" | "EMBEDDING_ROUTE" => {
            "the OpenAI paths are recognised by their standard names (…/chat/completions, …/completions, …/embeddings); remove it"
        }
        "CACHE_DB" => "the disk cache is one file: set cache.path (or CACHE_ROOT_PATH_OR_URL for its folder)",
        "DEFAULT_STREAM_RESPONSE" => "not needed: responses are always relayed as they arrive; remove it",
        "TZ" => "log timestamps are UTC (RFC 3339, `…Z`); remove it unless something else needs it",
        "WEBUI_RESTART_PORT" | "WEBUI_LOG_PORT" | "OPENAI_FORWARD_WEBUI" | "OPENAI_FORWARD_HOST" => {
            "the web UI's ZMQ ports are not used; remove it"
        }
        "ssl_keyfile" | "ssl_certfile" | "SSL_KEYFILE" | "SSL_CERTFILE" => {
            "TLS is not terminated by llm-forward; put it in front (an Envoy/Istio ingress or a load balancer)"
        }
        "ENVOY_BIN" | "LLM_FORWARD_WASM" => {
            "a working folder's file does not choose which program runs: set it in the environment (or pass --wasm)"
        }
        "OPENAI_API_KEY" => "the pre-0.8 name: write the keys as OPENAI_API_KEY_CONFIG={\"sk-…\": [0]}",
        "FORWARD_KEY" => "the pre-0.8 name: write the keys as FORWARD_KEY_CONFIG={\"0\": [\"fk-…\"]}",
        _ => return None,
    })
}

/// One warning line for a variable of a `.env` / YAML that is not used, or `None` when it is used.
pub fn key_warning(key: &str) -> Option<String> {
    let program = matches!(key, "ENVOY_BIN" | "LLM_FORWARD_WASM");
    if !program && (MAPPED.contains(&key) || OWN.contains(&key) || key.starts_with("LLM_FORWARD_"))
    {
        return None;
    }
    Some(match ignored_advice(key) {
        Some(advice) => format!("{key} is ignored: {advice}"),
        None => format!(
            "{key} is not an OpenAI-Forward or llm-forward setting and has no effect here (check its spelling, or remove it)"
        ),
    })
}

// ---------------------------------------------------------------------------------------------
// Reading the working folder
// ---------------------------------------------------------------------------------------------

/// OpenAI-Forward settings found in a folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overlay {
    /// The file they came from.
    pub source: PathBuf,
    /// Variables in file order.
    pub vars: Vec<(String, String)>,
    /// One line each: unused keys, parse problems, notes.
    pub warnings: Vec<String>,
}

impl Overlay {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads `dir/openai-forward-config.yaml` (if present and not empty) or else `dir/.env`.
/// `lookup` is the real environment (for `${VAR}` expansion in the `.env`). `Ok(None)`: neither file.
pub fn read_folder(
    dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Overlay>, String> {
    let yaml = dir.join(YAML_FILE);
    let dotenv = dir.join(DOTENV_FILE);
    if let Ok(text) = std::fs::read_to_string(&yaml) {
        if !text.trim().is_empty() {
            let mut overlay =
                from_openai_forward_yaml(&text).map_err(|e| format!("{}: {e}", yaml.display()))?;
            overlay.source = yaml;
            if dotenv.exists() {
                overlay.warnings.push(format!(
                    "{} is not read: {YAML_FILE} replaces it (as in OpenAI-Forward)",
                    dotenv.display()
                ));
            }
            return Ok(Some(overlay));
        }
    }
    match std::fs::read_to_string(&dotenv) {
        Ok(text) => {
            let mut overlay = from_dotenv(&text, lookup);
            overlay.source = dotenv;
            Ok(Some(overlay))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", dotenv.display())),
    }
}

/// A `.env` text as variables, with a warning per unused key.
pub fn from_dotenv(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Overlay {
    let (entries, problems) = crate::dotenv::parse(text, lookup);
    let mut warnings = problems;
    for e in &entries {
        if let Some(w) = key_warning(&e.key) {
            warnings.push(format!("line {}: {w}", e.line));
        }
    }
    Overlay {
        source: PathBuf::from(DOTENV_FILE),
        vars: entries.into_iter().map(|e| (e.key, e.value)).collect(),
        warnings,
    }
}

/// OpenAI-Forward HEAD's `openai-forward-config.yaml` as the variables its env mode reads.
/// Both the documented `rate_limit.req_rate_limit` and the top-level `req_rate_limit` the code
/// actually read are accepted (OpenAI-Forward silently ignored the documented one). Mapping order
/// is kept (it is the key rotation order and the limit lookup order).
pub fn from_openai_forward_yaml(text: &str) -> Result<Overlay, String> {
    use serde_yaml::Value as Y;
    let doc: Y = serde_yaml::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let Y::Mapping(top) = doc else {
        return Err("expected a mapping at the top".into());
    };
    let mut out = Overlay {
        source: PathBuf::from(YAML_FILE),
        ..Overlay::default()
    };
    let put = |name: &str, from: &str, value: &Y, out: &mut Overlay| {
        let text = match value {
            Y::Null => return,
            Y::String(s) => s.clone(),
            Y::Bool(b) => b.to_string(),
            Y::Number(n) => n.to_string(),
            other => yaml_json(other),
        };
        if let Some(w) = key_warning(name) {
            out.warnings.push(format!("{from}: {w}"));
        }
        out.vars.push((name.to_string(), text));
    };
    for (key, value) in &top {
        let key = scalar_text(key);
        match (key.as_str(), value) {
            ("forward", v) => put("FORWARD_CONFIG", "forward", v, &mut out),
            ("api_key", Y::Mapping(m)) => {
                for (k, v) in m {
                    let k = scalar_text(k);
                    let name = match k.as_str() {
                        "openai_key" => "OPENAI_API_KEY_CONFIG",
                        "forward_key" => "FORWARD_KEY_CONFIG",
                        "level" => "LEVEL_MODELS",
                        _ => {
                            out.warnings
                                .push(format!("api_key.{k} is not a setting; ignored"));
                            continue;
                        }
                    };
                    put(name, &format!("api_key.{k}"), v, &mut out);
                }
            }
            ("log", Y::Mapping(m)) => {
                for (k, v) in m {
                    let k = scalar_text(k);
                    put(
                        &format!("LOG_{}", k.to_ascii_uppercase()),
                        &format!("log.{k}"),
                        v,
                        &mut out,
                    );
                }
            }
            ("cache", Y::Mapping(m)) => {
                for (k, v) in m {
                    let k = scalar_text(k);
                    let name = match k.as_str() {
                        "default_request_caching_value" => "DEFAULT_REQUEST_CACHING_VALUE".into(),
                        other => format!("CACHE_{}", other.to_ascii_uppercase()),
                    };
                    put(&name, &format!("cache.{k}"), v, &mut out);
                }
            }
            ("rate_limit", Y::Mapping(m)) => {
                for (k, v) in m {
                    let k = scalar_text(k);
                    let from = format!("rate_limit.{k}");
                    match k.as_str() {
                        "global_rate_limit" => put("GLOBAL_RATE_LIMIT", &from, v, &mut out),
                        "strategy" => put("RATE_LIMIT_STRATEGY", &from, v, &mut out),
                        "iter_chunk" => put("ITER_CHUNK_TYPE", &from, v, &mut out),
                        "req_rate_limit" => {
                            put("REQ_RATE_LIMIT", &from, &route_values(v), &mut out)
                        }
                        "token_rate_limit" => {
                            put("TOKEN_RATE_LIMIT", &from, &route_values(v), &mut out)
                        }
                        "req_rate_limit_backend" => {
                            put("REQ_RATE_LIMIT_BACKEND", &from, v, &mut out)
                        }
                        _ => out
                            .warnings
                            .push(format!("{from} is not a setting; ignored")),
                    }
                }
            }
            ("req_rate_limit", v) => put("REQ_RATE_LIMIT", &key, &route_values(v), &mut out),
            ("ip_whitelist" | "ip_blacklist", v) => {
                let list = match v {
                    Y::Sequence(items) => {
                        Y::String(items.iter().map(scalar_text).collect::<Vec<_>>().join(","))
                    }
                    other => other.clone(),
                };
                put(&key.to_ascii_uppercase(), &key, &list, &mut out);
            }
            (other, v) => put(&other.to_ascii_uppercase(), other, v, &mut out),
        }
    }
    Ok(out)
}

/// A YAML scalar as text (mapping keys may be numbers: `0: [fk-0]`).
fn scalar_text(v: &serde_yaml::Value) -> String {
    use serde_yaml::Value as Y;
    match v {
        Y::String(s) => s.clone(),
        Y::Number(n) => n.to_string(),
        Y::Bool(b) => b.to_string(),
        Y::Null => String::new(),
        other => yaml_json(other),
    }
}

/// A YAML value as JSON text, keeping mapping order; mapping keys become strings.
fn yaml_json(v: &serde_yaml::Value) -> String {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => "null".into(),
        Y::Bool(b) => b.to_string(),
        Y::Number(n) => n.to_string(),
        Y::String(s) => Value::String(s.clone()).to_string(),
        Y::Sequence(items) => format!(
            "[{}]",
            items.iter().map(yaml_json).collect::<Vec<_>>().join(",")
        ),
        Y::Mapping(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}:{}", Value::String(scalar_text(k)), yaml_json(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Y::Tagged(t) => yaml_json(&t.value),
    }
}

/// `[{route, value}]` (the YAML form) → `{route: value}` (the env form); other shapes unchanged.
fn route_values(v: &serde_yaml::Value) -> serde_yaml::Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Sequence(items) => {
            let mut m = serde_yaml::Mapping::new();
            for item in items {
                if let (Some(route), Some(value)) = (item.get("route"), item.get("value")) {
                    m.insert(Y::String(scalar_text(route)), value.clone());
                }
            }
            Y::Mapping(m)
        }
        other => other.clone(),
    }
}

/// Puts the overlay into the process environment where the real environment does not set a
/// variable, then exports the key variables ([`secret_vars`]). Call it before any thread starts.
pub fn export_to_process(overlay: Option<&Overlay>) -> Result<Vec<String>, String> {
    let mut set = Vec::new();
    if let Some(o) = overlay {
        for (k, v) in &o.vars {
            // A working folder never chooses the programs that run (its warning says so).
            let program = matches!(k.as_str(), "ENVOY_BIN" | "LLM_FORWARD_WASM");
            if !program && std::env::var_os(k).is_none() {
                std::env::set_var(k, v);
                set.push(k.clone());
            }
        }
    }
    let env = |k: &str| std::env::var(k).ok();
    for (k, v) in secret_vars(&env).map_err(|e| e.to_string())? {
        std::env::set_var(&k, v);
        set.push(k);
    }
    Ok(set)
}

/// Notes about behaviour that differs from OpenAI-Forward for this configuration.
pub fn behaviour_notes(env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let mut notes = Vec::new();
    let upstream = set("OPENAI_API_KEY_CONFIG")
        .and_then(|t| parse_upstream_keys(&t).ok())
        .unwrap_or_default();
    let forward = set("FORWARD_KEY_CONFIG").and_then(|t| parse_forward_keys(&t).ok());
    for name in ["OPENAI_API_KEY_CONFIG", "FORWARD_KEY_CONFIG"] {
        let placeholder = set(name)
            .and_then(|t| serde_json::from_str::<serde_json::Map<String, Value>>(t.trim()).ok())
            .is_some_and(|m| m.keys().any(|k| k.trim().is_empty()));
        if placeholder {
            notes.push(format!(
                "{name}: the empty key \"\" (the placeholder `aifd gen_config` writes) is ignored"
            ));
        }
    }
    match forward {
        Some((keys, n)) if !keys.is_empty() => {
            notes.extend(n);
            notes.push("clients must send one of the forward keys: unknown or missing keys get 401 here (OpenAI-Forward passed them upstream); set routes[].pass_through_unknown_keys: true for the old behaviour".into());
        }
        _ if !upstream.is_empty() => {
            notes.push("OPENAI_API_KEY_CONFIG without FORWARD_KEY_CONFIG: every client's request is sent with your upstream keys (OpenAI-Forward forwarded the client's own key); add forward keys to restrict who may use them".into());
        }
        _ => {}
    }
    notes
}

// ---------------------------------------------------------------------------------------------
// `llm-forward migrate`
// ---------------------------------------------------------------------------------------------

/// Removes from `value` what equals `default` (objects recursively; lists and scalars whole).
fn strip_defaults(value: &mut Value, default: &Value) {
    if let (Value::Object(m), Value::Object(d)) = (value, default) {
        let keys: Vec<String> = m.keys().cloned().collect();
        for k in keys {
            match (m.get_mut(&k), d.get(&k)) {
                (Some(v), Some(dv)) if v == dv => {
                    m.remove(&k);
                }
                (Some(v @ Value::Object(_)), Some(dv @ Value::Object(_))) => {
                    strip_defaults(v, dv);
                }
                _ => {}
            }
        }
    }
}

/// The `llm-forward.yaml` equivalent of `config`, leaving out what equals the defaults, with a
/// header naming the key variables to set (never their values).
pub fn to_yaml(
    config: &Config,
    source: &str,
    secrets: &[(String, String)],
    notes: &[String],
) -> String {
    let mut value = serde_json::to_value(config).unwrap_or(Value::Null);
    let default = serde_json::to_value(Config::default()).unwrap_or(Value::Null);
    if let Some(routes) = value.get_mut("routes").and_then(Value::as_array_mut) {
        for (i, r) in routes.iter_mut().enumerate() {
            let raw = config.routes.get(i);
            if let Some(raw) = raw {
                let plain = RouteConfig::new(&raw.route, &raw.base_url, raw.kind);
                let mut d = serde_json::to_value(plain).unwrap_or(Value::Null);
                // keep route, base_url and type explicit
                if let Some(m) = d.as_object_mut() {
                    m.remove("route");
                    m.remove("base_url");
                    m.remove("type");
                }
                strip_defaults(r, &d);
            }
        }
    }
    strip_defaults(&mut value, &default);
    // Always say where traffic goes.
    if let (Some(m), Ok(routes)) = (value.as_object_mut(), serde_json::to_value(&config.routes)) {
        if !m.contains_key("routes") {
            let mut routes = routes;
            if let Some(list) = routes.as_array_mut() {
                for (r, raw) in list.iter_mut().zip(&config.routes) {
                    let mut d =
                        serde_json::to_value(RouteConfig::new(&raw.route, &raw.base_url, raw.kind))
                            .unwrap_or(Value::Null);
                    if let Some(dm) = d.as_object_mut() {
                        dm.remove("route");
                        dm.remove("base_url");
                        dm.remove("type");
                    }
                    strip_defaults(r, &d);
                }
            }
            m.insert("routes".into(), routes);
        }
    }
    let body = serde_yaml::to_string(&value).unwrap_or_default();
    let mut out = String::new();
    out.push_str(&format!(
        "# llm-forward.yaml generated by `llm-forward migrate` from {source}.\n# Settings equal to llm-forward's defaults are left out (see docs/configuration.md).\n"
    ));
    if !secrets.is_empty() {
        out.push_str("#\n# Keys are not written here. Set these environment variables for `llm-forward run`\n# (a .env next to this file, docker-compose `environment:`/`env_file:`, or a Kubernetes Secret):\n");
        for (var, _) in secrets {
            let what = describe_var(var);
            out.push_str(&format!("#   {var}  ({what})\n"));
        }
    }
    if !notes.is_empty() {
        out.push_str("#\n# Behaviour that differs from OpenAI-Forward here:\n");
        for n in notes {
            out.push_str(&format!("#   - {n}\n"));
        }
    }
    out.push_str(&body);
    out
}

fn describe_var(var: &str) -> String {
    let ordinal = |n: &str| -> String {
        let i: usize = n.parse().unwrap_or(0);
        format!("key #{} in file order", i + 1)
    };
    if let Some(n) = var.strip_prefix("LLM_FORWARD_UPSTREAM_KEY_") {
        format!("OPENAI_API_KEY_CONFIG {}", ordinal(n))
    } else if let Some(n) = var.strip_prefix("LLM_FORWARD_FORWARD_KEY_") {
        format!("FORWARD_KEY_CONFIG {}", ordinal(n))
    } else {
        String::new()
    }
}

/// `KEY=value` lines for the key variables (what `migrate --keys-env FILE` writes).
pub fn secrets_env_file(secrets: &[(String, String)]) -> String {
    let mut out = String::from(
        "# Keys for llm-forward (generated by `llm-forward migrate`). Keep this file out of git.\n",
    );
    for (k, v) in secrets {
        out.push_str(&format!("{k}={v}\n"));
    }
    out
}

/// A migrated config, its key variables (name, value) and behaviour notes.
pub type Migrated = (Config, Vec<(String, String)>, Vec<String>);

/// The config `run` would build from `overlay` over the defaults (`lookup` = the real environment),
/// the key variables and the behaviour notes.
pub fn migrated(
    overlay: Option<&Overlay>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Migrated, Vec<String>> {
    let env = |k: &str| lookup(k).or_else(|| overlay.and_then(|o| o.get(k)).map(str::to_string));
    let secrets = secret_vars(&env).map_err(|e| vec![e.to_string()])?;
    let mut config = Config::default();
    crate::config_file::apply_env(&mut config, &env).map_err(|e| vec![e.to_string()])?;
    config
        .clone()
        .validate()
        .map_err(|errs| errs.into_iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
    Ok((config, secrets, behaviour_notes(&env)))
}

/// `llm-forward migrate`: prints the YAML on stdout, problems on stderr; the exit code.
pub fn cli(dir: &Path, keys_env: Option<&Path>) -> i32 {
    let lookup = |k: &str| std::env::var(k).ok();
    let overlay = match read_folder(dir, &lookup) {
        Ok(Some(o)) => o,
        Ok(None) => {
            eprintln!(
                "llm-forward: neither {DOTENV_FILE} nor {YAML_FILE} in {}",
                dir.display()
            );
            return 1;
        }
        Err(e) => {
            eprintln!("llm-forward: {e}");
            return 1;
        }
    };
    for w in &overlay.warnings {
        eprintln!("llm-forward: {}: {w}", overlay.source.display());
    }
    match migrated(Some(&overlay), &lookup) {
        Ok((config, secrets, notes)) => {
            if let Some(path) = keys_env {
                if let Err(e) = write_private(path, &secrets_env_file(&secrets)) {
                    eprintln!("llm-forward: cannot write {}: {e}", path.display());
                    return 1;
                }
                eprintln!(
                    "llm-forward: wrote {} key variable(s) to {}",
                    secrets.len(),
                    path.display()
                );
            }
            let source = overlay.source.display().to_string();
            print!("{}", to_yaml(&config, &source, &secrets, &notes));
            0
        }
        Err(errors) => {
            eprintln!(
                "llm-forward: the OpenAI-Forward configuration in {} cannot be migrated:\n  {}",
                overlay.source.display(),
                errors.join("\n  ")
            );
            1
        }
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests;
