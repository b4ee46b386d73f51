//! `llm-forward render`: print the Envoy bootstrap, an Istio manifest or the envoyproxy/ratelimit
//! YAML for a config.

use crate::config_file;
use std::path::PathBuf;

/// The command's flags (see `main.rs` for their help text).
pub struct CliOptions {
    pub config: Option<PathBuf>,
    pub wasm_path: String,
    pub log_dir: Option<String>,
    pub ca_bundle: Option<String>,
    pub without_filter: bool,
    pub istio: bool,
    pub istio_image: Option<String>,
    pub ratelimit_config: bool,
}

/// Prints what the flags ask for; the exit code.
pub fn run(options: CliOptions) -> i32 {
    let valid = match config_file::load_for_cli(options.config.as_deref()) {
        Ok(valid) => valid,
        Err(code) => return code,
    };
    if options.ratelimit_config {
        return match crate::fleet::ratelimit_yaml(&valid.raw.limits) {
            Ok(yaml) => {
                print!("{yaml}");
                0
            }
            Err(errors) => {
                eprintln!(
                    "llm-forward: these limits cannot be rendered for envoyproxy/ratelimit:\n  {}",
                    errors.join("\n  ")
                );
                1
            }
        };
    }
    if options.istio {
        use crate::istio;
        let mut istio_options = istio::IstioOptions::default();
        if let Some(image) = options.istio_image {
            istio_options.image = image;
        }
        let (manifest, notes) = istio::wasm_plugin(&valid, &istio_options);
        for n in &notes {
            eprintln!("llm-forward: note: {n}");
        }
        print!("{}", istio::to_yaml(&manifest, &notes));
        return 0;
    }
    let render_options = super::RenderOptions {
        wasm_path: options.wasm_path,
        log_dir: options.log_dir.unwrap_or_else(|| valid.raw.log_dir.clone()),
        ca_bundle: options.ca_bundle.unwrap_or_else(super::default_ca_bundle),
        ..Default::default()
    };
    let mut bootstrap = super::bootstrap(&valid, &render_options);
    if options.without_filter {
        super::without_filter(&mut bootstrap);
    }
    print!("{}", super::to_yaml(&bootstrap));
    0
}
