//! `llm-forward convert`: chat logs of the config's log folder → OpenAI-Forward's files.

use crate::config_file;
use std::path::PathBuf;

/// The command's flags (see `main.rs` for their help text).
pub struct CliOptions {
    pub config: Option<PathBuf>,
    pub log_folder: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub format: super::Format,
}

/// Converts what the flags name; the exit code.
pub fn run(options: CliOptions) -> i32 {
    let valid = match config_file::load_for_cli(options.config.as_deref()) {
        Ok(valid) => valid,
        Err(code) => return code,
    };
    // The converted files hold the conversations: as private as the chat logs.
    crate::private_files::set_process_umask(valid.raw.logging.group_readable);
    super::run(
        std::path::Path::new(&valid.raw.log_dir),
        options.log_folder.as_deref(),
        options.out.as_deref(),
        options.format,
    )
}
