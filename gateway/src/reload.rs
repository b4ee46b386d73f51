//! Hot reload through Envoy's file-based dynamic resources.
//!
//! `llm-forward run` does not give Envoy a static bootstrap. It splits the rendered bootstrap into
//! a small bootstrap (admin, stats, node) that points at two files Envoy watches — `lds.yaml`
//! (listeners) and `cds.yaml` (clusters). Applying a new config is writing those files again,
//! each by an atomic rename (Envoy reacts to the move). Envoy then builds the new listener next to the
//! old one and drains the old one: requests and streams already running finish on the config they
//! started with, new connections get the new one. Nothing is restarted, no connection is cut.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// The three files `run` gives Envoy.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicFiles {
    pub bootstrap: Value,
    pub listeners: Value,
    pub clusters: Value,
}

/// Split a static bootstrap into a dynamic one plus its LDS and CDS resources.
pub fn split(static_bootstrap: &Value, lds_path: &Path, cds_path: &Path) -> DynamicFiles {
    let mut bootstrap = static_bootstrap.clone();
    let resources = bootstrap
        .as_object_mut()
        .and_then(|o| o.remove("static_resources"))
        .unwrap_or(Value::Null);
    let typed = |items: Option<&Value>, kind: &str| -> Value {
        let list: Vec<Value> = items
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .map(|item| {
                        let mut item = item.clone();
                        if let Some(o) = item.as_object_mut() {
                            o.insert("@type".into(), Value::String(kind.into()));
                        }
                        item
                    })
                    .collect()
            })
            .unwrap_or_default();
        json!({ "resources": list })
    };
    let listeners = typed(resources.get("listeners"), LISTENER_TYPE);
    let clusters = typed(resources.get("clusters"), CLUSTER_TYPE);
    if let Some(o) = bootstrap.as_object_mut() {
        o.insert(
            "dynamic_resources".into(),
            json!({
                "lds_config": {"resource_api_version": "V3", "path_config_source": {"path": lds_path.display().to_string()}},
                "cds_config": {"resource_api_version": "V3", "path_config_source": {"path": cds_path.display().to_string()}},
            }),
        );
    }
    DynamicFiles {
        bootstrap,
        listeners,
        clusters,
    }
}

/// Where `run` keeps Envoy's files.
#[derive(Debug, Clone)]
pub struct RuntimeFiles {
    pub dir: PathBuf,
}

impl RuntimeFiles {
    pub fn bootstrap(&self) -> PathBuf {
        self.dir.join("envoy.yaml")
    }
    pub fn lds(&self) -> PathBuf {
        self.dir.join("lds.yaml")
    }
    pub fn cds(&self) -> PathBuf {
        self.dir.join("cds.yaml")
    }

    /// Write all three files (first start).
    pub fn write_all(&self, static_bootstrap: &Value) -> std::io::Result<()> {
        let files = split(static_bootstrap, &self.lds(), &self.cds());
        write_atomic(&self.cds(), &yaml(&files.clusters))?;
        write_atomic(&self.lds(), &yaml(&files.listeners))?;
        write_atomic(&self.bootstrap(), &yaml(&files.bootstrap))
    }

    /// Apply a new config to a running Envoy: clusters first, so a listener never refers to a
    /// cluster Envoy does not have yet.
    pub fn update(&self, static_bootstrap: &Value) -> std::io::Result<()> {
        let files = split(static_bootstrap, &self.lds(), &self.cds());
        write_atomic(&self.cds(), &yaml(&files.clusters))?;
        write_atomic(&self.lds(), &yaml(&files.listeners))
    }
}

fn yaml(value: &Value) -> String {
    serde_yaml::to_string(value).unwrap_or_default()
}

/// Write through a new owner-only temporary file and rename: Envoy's file watcher sees one
/// complete file, never a half-written one, and the files (which may hold literal keys) are 0600.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    crate::private_files::write_atomic(path, text.as_bytes())
}

/// Polls a file's modification time; cheap and dependency-free (a config file changes rarely).
#[derive(Debug)]
pub struct FileWatch {
    path: PathBuf,
    last: Option<(std::time::SystemTime, u64)>,
}

impl FileWatch {
    pub fn new(path: &Path) -> Self {
        let mut w = FileWatch {
            path: path.to_path_buf(),
            last: None,
        };
        w.last = w.stamp();
        w
    }

    fn stamp(&self) -> Option<(std::time::SystemTime, u64)> {
        let meta = std::fs::metadata(&self.path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    /// True once per change (modification time or size).
    pub fn changed(&mut self) -> bool {
        let now = self.stamp();
        if now != self.last {
            self.last = now;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_moves_resources_to_typed_files() {
        let b = json!({
            "admin": {"x": 1},
            "static_resources": {"listeners": [{"name": "l"}], "clusters": [{"name": "c1"}, {"name": "c2"}]},
        });
        let f = split(&b, Path::new("/r/lds.yaml"), Path::new("/r/cds.yaml"));
        assert!(f.bootstrap.get("static_resources").is_none());
        assert_eq!(f.bootstrap["admin"]["x"], 1);
        assert_eq!(
            f.bootstrap["dynamic_resources"]["lds_config"]["path_config_source"]["path"],
            "/r/lds.yaml"
        );
        assert_eq!(f.listeners["resources"][0]["@type"], LISTENER_TYPE);
        assert_eq!(f.listeners["resources"][0]["name"], "l");
        assert_eq!(f.clusters["resources"].as_array().map(|a| a.len()), Some(2));
        assert_eq!(f.clusters["resources"][1]["@type"], CLUSTER_TYPE);
    }

    #[test]
    fn file_watch_sees_each_change_once() {
        let dir = std::env::temp_dir().join(format!("llm-forward-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.yaml");
        std::fs::write(&p, "a: 1\n").unwrap();
        let mut w = FileWatch::new(&p);
        assert!(!w.changed());
        std::fs::write(&p, "a: 12\n").unwrap();
        assert!(w.changed());
        assert!(!w.changed());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
