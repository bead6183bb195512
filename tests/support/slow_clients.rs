//! Clients that hold a server's connections open: they trickle a request's
//! headers a byte at a time and never finish them (slowloris).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// `count` connections to `address`, each having sent the start of a
/// request's headers and nothing that ends them.
pub async fn open(address: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    // A hundred at a time, so the listen backlog never overflows.
    for _ in 0..count.div_ceil(100) {
        let batch = (count - streams.len()).min(100);
        let mut connects = tokio::task::JoinSet::new();
        for _ in 0..batch {
            connects.spawn(async move {
                let mut stream = TcpStream::connect(address).await.expect("connect");
                stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
                    .await
                    .expect("write the start of the headers");
                stream
            });
        }
        streams.extend(connects.join_all().await);
    }
    streams
}

/// One more header byte on each stream still open; answers how many took it.
pub async fn trickle(streams: &mut [TcpStream]) -> usize {
    let mut open = 0;
    for stream in streams {
        if stream.write_all(b"a").await.is_ok() {
            open += 1;
        }
    }
    open
}

/// Whether the server has closed `stream` (end of file or reset).
pub fn closed_by_server(stream: &TcpStream) -> bool {
    // Whatever the server sent before closing (an error answer) is skipped.
    let mut buffer = [0u8; 1024];
    loop {
        match stream.try_read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(err) => return err.kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}

/// Waits up to `within` for the server to close every stream; answers how
/// many are still open then.
pub async fn still_open_after(streams: &[TcpStream], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let open = streams.iter().filter(|s| !closed_by_server(s)).count();
        if open == 0 || Instant::now() >= deadline {
            return open;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status of `GET /healthz` on a new connection, and how long it took;
/// `None` when no answer came within `within`.
pub async fn healthz(address: SocketAddr, within: Duration) -> Option<(u16, Duration)> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(within)
        .build()
        .unwrap();
    let started = Instant::now();
    let response = client
        .get(format!("http://{address}/healthz"))
        .send()
        .await
        .ok()?;
    Some((response.status().as_u16(), started.elapsed()))
}
