//! Loopback load with wrk, shared by the HTTP benches.
//! Needs `wrk` (Debian: `apt-get install wrk`).

use std::process::Command;

/// Connections wrk keeps open.
pub const CONNECTIONS: &str = "32";
/// Seconds each load runs.
pub const SECONDS: &str = "10";

/// Requests per second and p99 latency (ms) of `wrk -t2` on `url`, with
/// extra arguments (`-H`, `-s script.lua`). Panics on any non-2xx answer.
pub fn wrk(url: &str, extra: &[&str]) -> (f64, f64) {
    let out = Command::new("wrk")
        .args([
            "-t2",
            "-c",
            CONNECTIONS,
            "-d",
            &format!("{SECONDS}s"),
            "--latency",
        ])
        .args(extra)
        .arg(url)
        .output()
        .expect("wrk is installed (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("Non-2xx"), "errors under load:\n{text}");
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in:\n{text}"));
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| millis(v.trim()))
        .unwrap_or_else(|| panic!("no 99% latency in:\n{text}"));
    (rps, p99)
}

/// wrk's `812.00us`, `1.23ms` or `2.00s`, in ms.
fn millis(value: &str) -> f64 {
    let split = value.find(|c: char| c.is_ascii_alphabetic()).unwrap();
    let number: f64 = value[..split].parse().unwrap();
    match &value[split..] {
        "us" => number / 1e3,
        "ms" => number,
        "s" => number * 1e3,
        unit => panic!("unknown unit {unit}"),
    }
}
