#![no_main]
//! See core/fuzz/checks.rs: the same checks replay core/fuzz/regressions/model_of/ in `cargo test`.

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::model_of(data));
