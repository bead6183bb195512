//! Versions side by side, semver resolution, pins, and atomic replacement.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use slipway_runtime::{CallContext, Kind, Message, RemoveError, ResolveError};

use crate::common::{body, guest, install, node, runtime};

/// The same component with an extra custom section: same code, new sha256.
fn with_note(wasm: &[u8], note: &str) -> Vec<u8> {
    let name = b"note";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(note.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0); // custom section
    let mut size = payload.len();
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        if size == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&payload);
    out
}

async fn greeting(plugin: &slipway_runtime::Plugin) -> String {
    let out = plugin
        .invoke(&CallContext::default(), "{}", Message::from_body("{}"))
        .await
        .unwrap()
        .unwrap();
    body(&out)["greeting"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn versions_live_side_by_side_and_resolve_by_semver() {
    let rt = runtime();
    install(&rt, &guest("greeter-v1")).await;
    install(&rt, &guest("greeter-v2")).await;

    assert_eq!(
        greeting(&node(&rt, "greeter", "^1")).await,
        "hello from greeter 1.4.0"
    );
    assert_eq!(
        greeting(&node(&rt, "greeter", "~1.0")).await,
        "hello from greeter 1.0.0"
    );
    assert_eq!(
        greeting(&node(&rt, "greeter", "=1.0.0")).await,
        "hello from greeter 1.0.0"
    );

    let err = rt
        .catalog()
        .resolve(Kind::NodeType, "greeter", &"^2".parse().unwrap())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no version of node-type `greeter` matches `^2` (loaded: 1.0.0, 1.4.0)"
    );
    let err = rt
        .catalog()
        .resolve(Kind::NodeType, "nosuch", &"*".parse().unwrap())
        .unwrap_err();
    assert!(matches!(err, ResolveError::Unknown { .. }));
    assert_eq!(
        err.to_string(),
        "no node-type plugin named `nosuch` is loaded"
    );
}

#[tokio::test]
async fn a_pinned_version_cannot_be_removed() {
    let rt = runtime();
    install(&rt, &guest("greeter-v1")).await;
    let v1 = semver::Version::new(1, 0, 0);
    let catalog = rt.catalog();
    catalog.pin(Kind::NodeType, "greeter", &v1, "release 7");
    let err = catalog.remove(Kind::NodeType, "greeter", &v1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "node-type `greeter@1.0.0` is still used by release 7"
    );
    assert!(matches!(err, RemoveError::Pinned { .. }));
    assert!(
        catalog.get(Kind::NodeType, "greeter", &v1).is_some(),
        "nothing was removed"
    );

    catalog.unpin(Kind::NodeType, "greeter", &v1, "release 7");
    catalog.remove(Kind::NodeType, "greeter", &v1).unwrap();
    assert!(catalog.list().is_empty());
    let err = catalog.remove(Kind::NodeType, "greeter", &v1).unwrap_err();
    assert_eq!(err.to_string(), "node-type `greeter@1.0.0` is not loaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_replacing_a_plugin_loses_no_call() {
    let rt = Arc::new(runtime());
    let original = guest("greeter-v1");
    let first = install(&rt, &original).await;
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));

    let mut callers = Vec::new();
    for _ in 0..8 {
        let (rt, stop, calls) = (rt.clone(), stop.clone(), calls.clone());
        callers.push(tokio::spawn(async move {
            let mut shas = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                let plugin = node(&rt, "greeter", "^1");
                shas.insert(plugin.sha256().to_string());
                // Every call must succeed, whichever code it started on.
                assert_eq!(greeting(&plugin).await, "hello from greeter 1.0.0");
                calls.fetch_add(1, Ordering::Relaxed);
            }
            shas
        }));
    }

    let mut last = first.sha256().to_string();
    for round in 0..5 {
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let installed = rt
            .install(&with_note(&original, &format!("round {round}")))
            .await
            .unwrap();
        assert_eq!(
            installed.replaced.unwrap().sha256(),
            last,
            "replaced the version in place"
        );
        last = installed.plugin.sha256().to_string();
    }
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    stop.store(true, Ordering::Relaxed);

    let mut seen = std::collections::BTreeSet::new();
    for caller in callers {
        seen.extend(caller.await.expect("no caller failed"));
    }
    assert!(calls.load(Ordering::Relaxed) > 0);
    assert!(seen.len() > 1, "callers saw the replacements");
    assert_eq!(
        node(&rt, "greeter", "^1").sha256(),
        last,
        "new calls get the newest code"
    );
}
