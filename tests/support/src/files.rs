//! A plain HTTP server on loopback that serves fixed files and counts the
//! requests for each, as a code host serves packages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Files by path, and the requests each got.
struct Served {
    files: HashMap<String, Vec<u8>>,
    requests: Mutex<HashMap<String, usize>>,
}

/// The server; it stops when dropped.
pub struct FileServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    served: Arc<Served>,
    task: tokio::task::JoinHandle<()>,
}

impl FileServer {
    /// Serves `files` (path → bytes) on a free loopback port.
    pub async fn start(files: Vec<(&str, Vec<u8>)>) -> FileServer {
        let served = Arc::new(Served {
            files: files
                .into_iter()
                .map(|(path, bytes)| (path.to_string(), bytes))
                .collect(),
            requests: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(served.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FileServer { url, served, task }
    }

    /// How many requests asked for `path`.
    pub fn requests(&self, path: &str) -> usize {
        self.served
            .requests
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(State(served): State<Arc<Served>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    *served
        .requests
        .lock()
        .unwrap()
        .entry(path.clone())
        .or_default() += 1;
    match served.files.get(&path) {
        Some(bytes) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
