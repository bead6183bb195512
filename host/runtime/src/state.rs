//! The per-call store data: grants, limits, and what the call did.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::context::CallContext;
use crate::egress::Egress;
use crate::manifest::{HostPattern, Manifest};

/// How many log records one call may write; the rest are counted and dropped.
pub(crate) const MAX_LOG_RECORDS: u32 = 256;
/// How much a call may write to stderr before it is cut.
const STDERR_CAPACITY: usize = 16 * 1024;

/// Store data for one call. A fresh one per call: nothing leaks between calls.
pub(crate) struct CallState {
    pub manifest: Arc<Manifest>,
    pub id: Arc<str>,
    pub context: CallContext,
    /// The hosts an operator granted an upload; see [`crate::Plugin::grant_hosts`].
    pub grant: Option<Arc<[HostPattern]>>,
    pub http: reqwest::Client,
    pub egress: Arc<Egress>,
    pub http_timeout_cap: Duration,
    pub max_http_body: usize,
    pub limiter: MemoryLimiter,
    pub clock: CpuClock,
    /// The panic message the SDK's hook logged, if any.
    pub panic: Option<String>,
    pub logs_written: u32,
    pub stderr: MemoryOutputPipe,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl CallState {
    pub fn new(
        manifest: Arc<Manifest>,
        id: Arc<str>,
        context: CallContext,
        grant: Option<Arc<[HostPattern]>>,
        (http, egress): (reqwest::Client, Arc<Egress>),
        limits: CallLimits,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        // No environment, arguments, preopened directories or network.
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        CallState {
            manifest,
            id,
            context,
            grant,
            http,
            egress,
            http_timeout_cap: limits.http_timeout_cap,
            max_http_body: limits.max_http_body,
            limiter: MemoryLimiter {
                cap: limits.memory_bytes,
                hit: false,
            },
            clock: CpuClock::new(limits.deadline),
            panic: None,
            logs_written: 0,
            stderr,
            wasi,
            table: ResourceTable::new(),
        }
    }

    /// What the plugin wrote to stderr, trimmed.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents())
            .trim()
            .to_string()
    }
}

impl wasmtime_wasi_io::IoView for CallState {
    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The limits of one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallLimits {
    pub deadline: Duration,
    /// The longest the call may take in all.
    pub wall: Duration,
    pub memory_bytes: usize,
    pub http_timeout_cap: Duration,
    pub max_http_body: usize,
}

/// Caps linear memory and remembers whether the cap was hit.
pub(crate) struct MemoryLimiter {
    cap: usize,
    pub hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Time the plugin's own code has run in this call: wall time less the time
/// spent waiting in host imports (HTTP has its own timeout).
pub(crate) struct CpuClock {
    started: Instant,
    in_host: Duration,
    pub deadline: Duration,
    pub expired: bool,
}

impl CpuClock {
    fn new(deadline: Duration) -> Self {
        CpuClock {
            started: Instant::now(),
            in_host: Duration::ZERO,
            deadline,
            expired: false,
        }
    }

    /// Whether the plugin has used up its deadline; remembers it when so.
    pub fn check(&mut self) -> bool {
        let used = self.started.elapsed().saturating_sub(self.in_host);
        self.expired |= used >= self.deadline;
        self.expired
    }

    /// Adds time spent waiting in a host import.
    pub fn add_host_time(&mut self, spent: Duration) {
        self.in_host += spent;
    }
}
