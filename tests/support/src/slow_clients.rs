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

/// One more header byte on each stream (a closed one is left as it is).
pub async fn trickle(streams: &mut [TcpStream]) {
    for stream in streams {
        let _ = stream.write_all(b"a").await;
    }
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

/// Holds 5,000 slow clients on `address` and checks, three times, that
/// each is still being served while `/healthz` answers 200 within 2 s;
/// answers the clients.
pub async fn healthz_answers_beside_5000(address: SocketAddr) -> Vec<TcpStream> {
    let mut slow = open(address, 5_000).await;
    for _ in 0..3 {
        trickle(&mut slow).await;
        let closed = slow.iter().filter(|s| closed_by_server(s));
        assert_eq!(closed.count(), 0, "every slow client is still being served");
        let (status, _) = healthz(address, Duration::from_secs(2))
            .await
            .expect("/healthz answers within 2 s while 5,000 clients trickle");
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    slow
}
