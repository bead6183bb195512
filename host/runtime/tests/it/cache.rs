//! The compiled-code cache survives a restart and recovers from damage.

use slipway_runtime::{CodeSource, Runtime, RuntimeConfig};

use crate::common::builtin;

fn runtime_in(dir: &std::path::Path) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.to_path_buf()),
        ..RuntimeConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn a_restart_loads_cached_code() {
    let dir = tempfile::tempdir().unwrap();
    let first = runtime_in(dir.path()).load(builtin("log")).await.unwrap();
    assert_eq!(first.code_source(), CodeSource::Compiled);

    let restarted = runtime_in(dir.path());
    let again = restarted.load(builtin("log")).await.unwrap();
    assert_eq!(again.code_source(), CodeSource::Cached);
    assert_eq!(again.sha256(), first.sha256());

    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files,
        [format!(
            "{}-{}.cwasm",
            first.sha256(),
            restarted.engine_hash()
        )]
    );
}

#[tokio::test]
async fn damaged_cached_code_is_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = runtime_in(dir.path()).load(builtin("log")).await.unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    let again = runtime_in(dir.path()).load(builtin("log")).await.unwrap();
    assert_eq!(again.code_source(), CodeSource::Compiled);
    assert_eq!(again.sha256(), plugin.sha256());
    let third = runtime_in(dir.path()).load(builtin("log")).await.unwrap();
    assert_eq!(
        third.code_source(),
        CodeSource::Cached,
        "the cache was repaired"
    );
}

#[tokio::test]
async fn a_directory_of_plugins_loads_with_each_outcome_reported() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["log", "choice"] {
        std::fs::write(dir.path().join(format!("{name}.wasm")), builtin(name)).unwrap();
    }
    std::fs::write(dir.path().join("broken.wasm"), b"not wasm").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();

    let rt = crate::common::runtime();
    let outcomes = rt.install_dir(dir.path()).await.unwrap();
    let summary: Vec<(String, Result<String, String>)> = outcomes
        .into_iter()
        .map(|(path, outcome)| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                outcome
                    .map(|i| i.plugin.id().to_string())
                    .map_err(|e| e.to_string()),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "broken.wasm".to_string(),
                Err("cannot load plugin: not a WebAssembly binary".to_string())
            ),
            ("choice.wasm".to_string(), Ok("choice@1.0.0".to_string())),
            ("log.wasm".to_string(), Ok("log@1.0.0".to_string())),
        ]
    );
    assert_eq!(rt.catalog().list().len(), 2);
}
