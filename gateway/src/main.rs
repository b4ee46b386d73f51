//! `llm-forward` command line.

use clap::{Parser, Subcommand};
use llm_forward_gateway::{config_file, render, run};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "llm-forward",
    about = "An LLM API forwarding gateway inside Envoy",
    disable_version_flag = true
)]
struct Cli {
    /// Print the versions of the gateway, the filter and the Envoy it would use.
    #[arg(short = 'V', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Render the Envoy config, start Envoy with the filter, print the banner, supervise.
    Run {
        /// Config file (default: ./llm-forward.yaml when present, else built-in defaults).
        #[arg(short, long, env = "LLM_FORWARD_CONFIG")]
        config: Option<PathBuf>,
        /// Listener port (like `aifd run --port`; default: server.port, 8000).
        #[arg(long, help_heading = "Listener and process")]
        port: Option<u16>,
        /// Envoy worker threads (like `aifd run --workers`; default: server.concurrency, 0 = one per core).
        #[arg(long, help_heading = "Listener and process")]
        workers: Option<u32>,
        /// Folder of the access and chat logs (default: log_dir, ./Log).
        #[arg(long, help_heading = "Listener and process")]
        log_dir: Option<String>,
        /// Envoy's admin on this 127.0.0.1 TCP port instead of a private Unix socket. Every local
        /// user can reach it: use only where nobody else runs code.
        #[arg(long, help_heading = "Listener and process")]
        admin_port: Option<u16>,
        /// The filter's .wasm (default: next to this binary, the package's share folder, or this
        /// binary's own build output).
        #[arg(long, help_heading = "Listener and process")]
        wasm: Option<PathBuf>,
        /// Serve every route from a built-in mock OpenAI upstream (try it offline).
        #[arg(long, help_heading = "Extras")]
        demo: bool,
        /// Echo Envoy's log lines.
        #[arg(short, long, help_heading = "Extras")]
        verbose: bool,
        /// Serve the web console (127.0.0.1:8003, or a free port when another gateway has it,
        /// unless `console:` in the config says otherwise); its URL and token are printed at start.
        #[arg(long, help_heading = "Extras")]
        console: bool,
    },
    /// Print the Envoy bootstrap YAML for a config.
    Render {
        #[arg(short, long, env = "LLM_FORWARD_CONFIG")]
        config: Option<PathBuf>,
        /// Path of the .wasm as written into the config.
        #[arg(long, default_value = "/etc/llm-forward/llm_forward_filter.wasm")]
        wasm_path: String,
        /// Access-log folder as written into the config (default: the config's log_dir).
        #[arg(long)]
        log_dir: Option<String>,
        /// CA bundle for https upstreams (default: the first one found on this machine).
        #[arg(long)]
        ca_bundle: Option<String>,
        /// Leave the llm-forward filter out: plain Envoy with the same routes (a benchmark baseline).
        #[arg(long)]
        without_filter: bool,
        /// Print an Istio WasmPlugin manifest (ingress gateway) instead of an Envoy bootstrap.
        #[arg(long)]
        istio: bool,
        /// With --istio: the oci:// image holding plugin.wasm (see Dockerfile.wasm).
        #[arg(long)]
        istio_image: Option<String>,
        /// Print the envoyproxy/ratelimit YAML equivalent to the `limits:` section instead.
        #[arg(long)]
        ratelimit_config: bool,
    },
    /// Run only the cache service (settings from the config's `cache:` section, flags win).
    Cache {
        #[arg(short, long, env = "LLM_FORWARD_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on: IP:PORT or unix:/path/to.sock (default: 127.0.0.1:<cache.port>).
        #[arg(long)]
        listen: Option<llm_forward_gateway::http_server::ListenAddr>,
        /// memory | disk | redis (also LMDB / LevelDB, meaning disk).
        #[arg(long)]
        backend: Option<String>,
        /// Memory backend bound in bytes.
        #[arg(long)]
        max_bytes: Option<u64>,
        /// Disk backend database file.
        #[arg(long)]
        path: Option<String>,
        /// Redis backend URL (redis://host:port[/db]).
        #[arg(long)]
        redis_url: Option<String>,
        /// TTL of stores that do not say.
        #[arg(long)]
        ttl_seconds: Option<u64>,
    },
    /// Turn chat logs into OpenAI-Forward's chat_<route>.json or fine-tuning JSONL.
    Convert {
        #[arg(short, long, env = "LLM_FORWARD_CONFIG")]
        config: Option<PathBuf>,
        /// One route's log folder (holding chat.log and rotated chat.log.*); default: every
        /// route folder under the config's log_dir.
        #[arg(long)]
        log_folder: Option<PathBuf>,
        /// Output file (default: <log_dir>/chat_<route>.json or .jsonl).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "reference")]
        format: llm_forward_gateway::convert::Format,
    },
    /// Print the llm-forward.yaml equivalent to an OpenAI-Forward .env / openai-forward-config.yaml.
    Migrate {
        /// Folder holding OpenAI-Forward's .env or openai-forward-config.yaml.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Also write the key variables (LLM_FORWARD_*_KEY_<n>=…) to this file (mode 0600), for
        /// docker-compose `env_file:` or `kubectl create secret generic --from-env-file`.
        #[arg(long)]
        keys_env: Option<PathBuf>,
    },
    /// Run the built-in rate-limit service (Envoy's RateLimitService over gRPC, counting in Redis).
    Ratelimit {
        /// host:port or unix:/path (the socket is created 0600).
        #[arg(
            long,
            env = "LLM_FORWARD_RATELIMIT_LISTEN",
            default_value = "127.0.0.1:8081"
        )]
        listen: String,
        /// redis://[[user]:password@]host[:port][/db]
        #[arg(
            long,
            env = "LLM_FORWARD_RATELIMIT_REDIS",
            default_value = "redis://127.0.0.1:6379"
        )]
        redis: String,
        /// Deadline of one call's Redis work; past it the call answers UNAVAILABLE.
        #[arg(long, default_value_t = 15)]
        redis_timeout_ms: u64,
        /// Limits for descriptors without a `limit` override, in envoyproxy/ratelimit's YAML format.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run only the mock OpenAI-compatible upstream (for demos and benchmarks).
    Mock {
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: std::net::SocketAddr,
    },
}

fn print_versions() {
    use llm_forward_gateway::{envoy, versions};
    println!("llm-forward {}", llm_forward_gateway::VERSION);
    match envoy::locate_wasm(std::env::var_os("LLM_FORWARD_WASM").map(PathBuf::from)) {
        Ok(path) => {
            let v = versions::filter_version(&path).unwrap_or_else(|| "unknown".into());
            println!("filter {v} ({})", path.display());
        }
        Err(e) => println!("filter not found: {e}"),
    }
    match envoy::locate_envoy(std::env::var("ENVOY_BIN").ok()) {
        Ok(path) => {
            let v = versions::envoy_version(&path).unwrap_or_else(|| "unknown".into());
            println!("envoy {v} ({})", path.display());
        }
        Err(e) => println!("envoy not found: {e}"),
    }
}

/// Reads `./openai-forward-config.yaml` or `./.env`, prints one line per unused key, and puts its
/// variables (and the key variables derived from them) into this process's environment. Returns
/// the names it set.
fn load_working_folder() -> Result<Vec<String>, String> {
    use llm_forward_gateway::migrate;
    let lookup = |k: &str| std::env::var(k).ok();
    let overlay = migrate::read_folder(std::path::Path::new("."), &lookup)?;
    if let Some(o) = &overlay {
        let source = o.source.display().to_string();
        let source = source.trim_start_matches("./");
        for w in &o.warnings {
            eprintln!("llm-forward: {source}: {w}");
        }
    }
    migrate::export_to_process(overlay.as_ref())
}

fn main() {
    let cli = Cli::parse();
    if cli.version {
        print_versions();
        return;
    }
    let Some(command) = cli.command else {
        eprintln!("llm-forward: a command is needed (run, render, mock); see llm-forward --help");
        std::process::exit(2);
    };
    // OpenAI-Forward's `.env` / `openai-forward-config.yaml` in the working folder: its variables
    // join the environment where the real one does not set them (python-dotenv's override=False).
    // Done before any thread exists (set_var).
    let mut from_working_folder = Vec::new();
    if matches!(
        command,
        Command::Run { .. }
            | Command::Render { .. }
            | Command::Cache { .. }
            | Command::Convert { .. }
    ) {
        match load_working_folder() {
            Ok(names) => from_working_folder = names,
            Err(e) => {
                eprintln!("llm-forward: {e}");
                std::process::exit(1);
            }
        }
    }
    if let Command::Migrate { dir, keys_env } = &command {
        std::process::exit(llm_forward_gateway::migrate::cli(dir, keys_env.as_deref()));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("llm-forward: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match command {
        Command::Run {
            config,
            port,
            workers,
            log_dir,
            admin_port,
            wasm,
            demo,
            verbose,
            console,
        } => runtime.block_on(run::run(run::RunOptions {
            config,
            wasm,
            demo,
            verbose,
            console,
            overrides: config_file::Overrides {
                port,
                workers,
                admin_port,
                log_dir,
            },
            from_working_folder,
        })),
        Command::Render {
            config,
            wasm_path,
            log_dir,
            ca_bundle,
            without_filter,
            istio,
            istio_image,
            ratelimit_config,
        } => render::cli::run(render::cli::CliOptions {
            config,
            wasm_path,
            log_dir,
            ca_bundle,
            without_filter,
            istio,
            istio_image,
            ratelimit_config,
        }),
        Command::Cache {
            config,
            listen,
            backend,
            max_bytes,
            path,
            redis_url,
            ttl_seconds,
        } => runtime.block_on(llm_forward_gateway::cache::cli(
            llm_forward_gateway::cache::CliOptions {
                config,
                listen,
                backend,
                max_bytes,
                path,
                redis_url,
                ttl_seconds,
            },
        )),
        Command::Convert {
            config,
            log_folder,
            out,
            format,
        } => {
            llm_forward_gateway::convert::cli::run(llm_forward_gateway::convert::cli::CliOptions {
                config,
                log_folder,
                out,
                format,
            })
        }
        Command::Migrate { .. } => 0,
        Command::Ratelimit {
            listen,
            redis,
            redis_timeout_ms,
            config,
        } => runtime.block_on(llm_forward_gateway::ratelimit::cli(
            llm_forward_gateway::ratelimit::CliOptions {
                listen,
                redis,
                redis_timeout_ms,
                config,
            },
        )),
        Command::Mock { listen } => runtime.block_on(async move {
            match llm_forward_gateway::mock::MockUpstream::start(listen).await {
                Ok(mock) => {
                    println!("mock upstream listening on {}", mock.base_url());
                    let _ = tokio::signal::ctrl_c().await;
                    0
                }
                Err(e) => {
                    eprintln!("llm-forward: cannot start the mock upstream on {listen}: {e}");
                    1
                }
            }
        }),
    };
    std::process::exit(code);
}
