//! The per-call store data: grants, limits, and what the call did.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::context::CallContext;
use crate::egress::Egress;
use crate::manifest::{HostPattern, Manifest};
use crate::shares::{Held, Spent};

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
        (limits, held): (CallLimits, Held),
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
                held,
                growing: 0,
                spent: None,
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

/// Caps linear memory, counts it against the runtime's and the tenant's
/// budgets, and remembers which limit was hit. Holds the call's slots.
pub(crate) struct MemoryLimiter {
    cap: usize,
    pub hit: bool,
    held: Held,
    /// What the growth under way took from the budgets.
    growing: usize,
    pub spent: Option<Spent>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.hit = true;
            return Ok(false);
        }
        // Past the memory's own maximum the growth fails anyway: nothing is taken.
        if maximum.is_some_and(|maximum| desired > maximum) {
            return Ok(false);
        }
        let more = desired.saturating_sub(current);
        if let Err(spent) = self.held.grow(more) {
            self.spent = Some(spent);
            return Ok(false);
        }
        self.growing = more;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // Granted above, but not had: given back.
        self.held.shrink(std::mem::take(&mut self.growing));
        Ok(())
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

/// The call's deadline against the CPU time its code has used.
pub(crate) struct CpuClock {
    pub meter: Arc<CpuMeter>,
    pub deadline: Duration,
    pub expired: bool,
}

impl CpuClock {
    fn new(deadline: Duration) -> Self {
        CpuClock {
            meter: Arc::new(CpuMeter::default()),
            deadline,
            expired: false,
        }
    }

    /// Whether the plugin has used up its deadline; remembers it when so.
    /// Called on the thread running the call.
    pub fn check(&mut self) -> bool {
        self.expired |= self.meter.used() >= self.deadline;
        self.expired
    }
}

/// CPU time a call has used: the thread's CPU time across each poll of the
/// call's future ([`CpuMeter::poll`]), so time waiting on the host (HTTP,
/// sleeps) or for a free thread on a busy machine does not count.
#[derive(Debug, Default)]
pub(crate) struct CpuMeter {
    /// Nanoseconds used in the polls that ended.
    used: AtomicU64,
    /// The thread's CPU time when the poll under way started; 0 between polls.
    poll_started: AtomicU64,
}

impl CpuMeter {
    /// Polls `future` once, counting the CPU time the poll takes.
    pub fn poll<F: Future>(&self, future: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let started = thread_cpu_ns().max(1);
        self.poll_started.store(started, Ordering::Relaxed);
        let polled = future.poll(cx);
        self.poll_started.store(0, Ordering::Relaxed);
        let spent = thread_cpu_ns().saturating_sub(started);
        self.used.fetch_add(spent, Ordering::Relaxed);
        polled
    }

    /// CPU time used so far; when called during a poll, on the polling
    /// thread, the poll's time so far is included.
    pub fn used(&self) -> Duration {
        let mut used = self.used.load(Ordering::Relaxed);
        let started = self.poll_started.load(Ordering::Relaxed);
        if started != 0 {
            used += thread_cpu_ns().saturating_sub(started);
        }
        Duration::from_nanos(used)
    }
}

/// The CPU time this thread has used, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; the clock id is a constant
    // every Linux has.
    let read = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    debug_assert_eq!(read, 0, "the thread's CPU clock is readable");
    (now.tv_sec as u64) * 1_000_000_000 + now.tv_nsec as u64
}
