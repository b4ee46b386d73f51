//! What `llm-forward --version` reports: the gateway, the filter it would load and the Envoy it found.

use std::path::Path;

/// Read a custom section's bytes from a `.wasm` module (the filter stores its version in one).
pub fn wasm_custom_section(module: &[u8], wanted: &str) -> Option<Vec<u8>> {
    fn leb128(bytes: &[u8], pos: &mut usize) -> Option<usize> {
        let mut value: usize = 0;
        let mut shift = 0;
        loop {
            let byte = *bytes.get(*pos)?;
            *pos += 1;
            value |= ((byte & 0x7f) as usize).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(value);
            }
            shift += 7;
            if shift > 35 {
                return None;
            }
        }
    }
    if module.get(..4)? != b"\0asm" {
        return None;
    }
    let mut pos = 8;
    while pos < module.len() {
        let id = *module.get(pos)?;
        pos += 1;
        let size = leb128(module, &mut pos)?;
        let end = pos.checked_add(size)?;
        if id == 0 {
            let mut p = pos;
            let name_len = leb128(module, &mut p)?;
            let name = module.get(p..p.checked_add(name_len)?)?;
            if name == wanted.as_bytes() {
                return module.get(p + name_len..end).map(|b| b.to_vec());
            }
        }
        pos = end;
    }
    None
}

/// The filter version embedded in a `.wasm` file, if it is one of ours.
pub fn filter_version(path: &Path) -> Option<String> {
    let module = std::fs::read(path).ok()?;
    let bytes = wasm_custom_section(&module, "llm_forward_version")?;
    String::from_utf8(bytes).ok()
}

/// `1.40.0` from `envoy --version` output (`envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL`).
pub fn parse_envoy_version(output: &str) -> Option<String> {
    let after = output.split("version:").nth(1)?.trim();
    after.split('/').nth(1).map(|v| v.to_string())
}

pub fn envoy_version(envoy: &Path) -> Option<String> {
    let out = std::process::Command::new(envoy)
        .arg("--version")
        .output()
        .ok()?;
    parse_envoy_version(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_custom_section() {
        // magic + version, then a custom section named "v" holding "1.2.3", then an empty type section.
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend_from_slice(&[0, 7, 1, b'v']);
        m.extend_from_slice(b"1.2.3");
        m.extend_from_slice(&[1, 1, 0]);
        assert_eq!(wasm_custom_section(&m, "v").unwrap(), b"1.2.3");
        assert_eq!(wasm_custom_section(&m, "other"), None);
        assert_eq!(wasm_custom_section(b"not wasm", "v"), None);
        assert_eq!(
            wasm_custom_section(&m[..10], "v"),
            None,
            "truncated modules are not an error"
        );
    }

    #[test]
    fn parses_envoy_version_line() {
        let line = "\nenvoy  version: 9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0/Clean/RELEASE/BoringSSL\n";
        assert_eq!(parse_envoy_version(line).as_deref(), Some("1.40.0"));
        assert_eq!(parse_envoy_version("garbage"), None);
    }
}
