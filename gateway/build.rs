//! With the `embed-wasm` feature (used by `cargo install --path gateway --features embed-wasm`), build
//! the filter for wasm32-wasip1 and embed it in the binary, so an installed `llm-forward` needs no
//! separate `.wasm`. Without the feature nothing happens: the dev loop stays fast and the binary finds
//! the filter on disk.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_EMBED_WASM").is_none() {
        return;
    }
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    let manifest_dir =
        std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let filter_manifest = manifest_dir.join("../filter/Cargo.toml");
    println!("cargo:rerun-if-changed=../filter/src");
    println!("cargo:rerun-if-changed=../core/src");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // A separate target dir: the outer build holds the lock on the workspace's.
    let target_dir = out_dir.join("filter-target");
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip1",
            "--manifest-path",
        ])
        .arg(&filter_manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status();
    match status {
        Ok(s) if s.success() => {}
        _ => {
            println!("cargo:warning=building the filter failed; run `rustup target add wasm32-wasip1` and retry");
            std::process::exit(1);
        }
    }
    let wasm = target_dir.join("wasm32-wasip1/release/llm_forward_filter.wasm");
    if std::fs::copy(&wasm, out_dir.join("llm_forward_filter.wasm")).is_err() {
        println!("cargo:warning=filter not found at {}", wasm.display());
        std::process::exit(1);
    }
}
