//! Prometheus metrics: requests per trigger and status, request latency per
//! trigger, invocations, errors and latency per node. Counters are atomics
//! indexed by trigger and node, so recording takes no lock.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 16] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 5.0,
];

/// The lowest and highest status codes counted one by one.
const FIRST_STATUS: u16 = 100;
const LAST_STATUS: u16 = 599;

/// A latency histogram.
#[derive(Default)]
struct Histogram {
    /// Observations per bucket, the last one above every bound.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, count) in self.buckets.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = BUCKETS.get(i).map_or("+Inf".to_string(), f64::to_string);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

struct Trigger {
    labels: String,
    /// Requests by status, from [`FIRST_STATUS`].
    statuses: Vec<AtomicU64>,
    latency: Histogram,
}

struct Node {
    labels: String,
    errors: AtomicU64,
    latency: Histogram,
}

/// The engine's metrics.
pub struct Metrics {
    triggers: Vec<Trigger>,
    nodes: Vec<Node>,
}

impl Metrics {
    /// Metrics for these triggers and nodes, by index.
    pub fn new<'a>(
        triggers: impl IntoIterator<Item = &'a str>,
        nodes: impl IntoIterator<Item = &'a str>,
    ) -> Metrics {
        let statuses = usize::from(LAST_STATUS - FIRST_STATUS + 1);
        Metrics {
            triggers: triggers
                .into_iter()
                .map(|id| Trigger {
                    labels: format!("trigger=\"{}\"", escape(id)),
                    statuses: (0..statuses).map(|_| AtomicU64::new(0)).collect(),
                    latency: Histogram::default(),
                })
                .collect(),
            nodes: nodes
                .into_iter()
                .map(|id| Node {
                    labels: format!("node=\"{}\"", escape(id)),
                    errors: AtomicU64::new(0),
                    latency: Histogram::default(),
                })
                .collect(),
        }
    }

    /// Records a request answered by trigger `trigger` (its index).
    pub fn request(&self, trigger: usize, status: u16, elapsed: Duration) {
        let trigger = &self.triggers[trigger];
        let index = status.clamp(FIRST_STATUS, LAST_STATUS) - FIRST_STATUS;
        trigger.statuses[usize::from(index)].fetch_add(1, Ordering::Relaxed);
        trigger.latency.observe(elapsed);
    }

    /// Records one invocation of node `node` (its index).
    pub fn node(&self, node: usize, elapsed: Duration, failed: bool) {
        let node = &self.nodes[node];
        node.latency.observe(elapsed);
        if failed {
            node.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition format; `ready` is the engine's
    /// readiness at the time.
    pub fn render(&self, ready: bool) -> String {
        let mut out = String::new();
        out.push_str("# HELP slipway_engine_ready Whether every plugin is loaded.\n");
        out.push_str("# TYPE slipway_engine_ready gauge\n");
        let _ = writeln!(out, "slipway_engine_ready {}", u8::from(ready));

        out.push_str(
            "# HELP slipway_engine_requests_total Requests answered, by trigger and status.\n",
        );
        out.push_str("# TYPE slipway_engine_requests_total counter\n");
        for trigger in &self.triggers {
            for (offset, count) in trigger.statuses.iter().enumerate() {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    let status = usize::from(FIRST_STATUS) + offset;
                    let labels = &trigger.labels;
                    let _ = writeln!(
                        out,
                        "slipway_engine_requests_total{{{labels},status=\"{status}\"}} {count}"
                    );
                }
            }
        }
        out.push_str("# HELP slipway_engine_request_duration_seconds Time to answer a request, by trigger.\n");
        out.push_str("# TYPE slipway_engine_request_duration_seconds histogram\n");
        for trigger in &self.triggers {
            let name = "slipway_engine_request_duration_seconds";
            trigger.latency.render(&mut out, name, &trigger.labels);
        }

        out.push_str("# HELP slipway_engine_node_errors_total Node invocations that failed.\n");
        out.push_str("# TYPE slipway_engine_node_errors_total counter\n");
        for node in &self.nodes {
            let errors = node.errors.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "slipway_engine_node_errors_total{{{}}} {errors}",
                node.labels
            );
        }
        out.push_str(
            "# HELP slipway_engine_node_duration_seconds Time of one node invocation, by node.\n",
        );
        out.push_str("# TYPE slipway_engine_node_duration_seconds histogram\n");
        for node in &self.nodes {
            let name = "slipway_engine_node_duration_seconds";
            node.latency.render(&mut out, name, &node.labels);
        }
        out
    }
}

/// A label value as the exposition format quotes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let metrics = Metrics::new(["in"], ["a\"b"]);
        metrics.node(0, Duration::from_micros(30), false);
        metrics.node(0, Duration::from_millis(2), true);
        metrics.request(0, 200, Duration::from_millis(3));
        metrics.request(0, 200, Duration::from_millis(3));
        metrics.request(0, 503, Duration::from_millis(1));
        let text = metrics.render(false);
        for line in [
            "slipway_engine_ready 0",
            "slipway_engine_requests_total{trigger=\"in\",status=\"200\"} 2",
            "slipway_engine_requests_total{trigger=\"in\",status=\"503\"} 1",
            "slipway_engine_node_errors_total{node=\"a\\\"b\"} 1",
            "slipway_engine_node_duration_seconds_bucket{node=\"a\\\"b\",le=\"0.000025\"} 0",
            "slipway_engine_node_duration_seconds_bucket{node=\"a\\\"b\",le=\"0.00005\"} 1",
            "slipway_engine_node_duration_seconds_bucket{node=\"a\\\"b\",le=\"0.0025\"} 2",
            "slipway_engine_node_duration_seconds_bucket{node=\"a\\\"b\",le=\"+Inf\"} 2",
            "slipway_engine_node_duration_seconds_count{node=\"a\\\"b\"} 2",
            "slipway_engine_request_duration_seconds_count{trigger=\"in\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }
}
