//! The sandbox user code compiles in: bubblewrap (`bwrap`, Debian
//! `bubblewrap`).
//!
//! Rust source reaches the compiler's host at compile time through
//! `include_bytes!`, `include_str!`, `#[path]` and `env!`/`option_env!`. So
//! cargo runs in new namespaces (user, mount, pid, network, ipc, uts) with
//! an empty environment but for what cargo needs, seeing only the system's
//! programs and libraries (`/usr`), the Rust toolchain and the crates'
//! sources read-only, and the build's own work directory. It has no
//! network, no `/etc`, no data directory and no other build's files. Each
//! process is held to an address-space, a CPU-time and a file-size limit;
//! the caller keeps the wall-clock limit.
//!
//! Bubblewrap rather than a container: it needs no image (none can be
//! pulled here, and a toolchain image would be another thing to keep), no
//! daemon, and starts in milliseconds.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

/// Most address space one process of a build may map.
pub const MEMORY_BYTES: u64 = 4 << 30;
/// Most bytes one file a build writes may hold.
pub const FILE_BYTES: u64 = 1 << 30;

/// The toolchain a sandboxed build runs, found outside the sandbox.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// `bwrap`.
    bwrap: PathBuf,
    /// The Rust toolchain's root (`rustc --print sysroot`).
    sysroot: PathBuf,
    /// Cargo's registry (downloaded crates), shown read-only.
    registry: PathBuf,
}

/// Why no sandboxed build can run on this server.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "rust-code nodes are compiled only inside a sandbox, and none works on this server: {0} \
     (install bubblewrap, Debian package `bubblewrap`)"
)]
pub struct NoSandbox(String);

/// One build: what it may write, and how long its processes may run.
#[derive(Debug)]
pub struct Build<'a> {
    /// The work directory, writable; cargo runs there.
    pub work: &'a Path,
    /// Directories shown read-only at the same path (the vendored SDK).
    pub read_only: &'a [&'a Path],
    /// CPU seconds each process may use.
    pub cpu_seconds: u64,
}

impl Toolchain {
    /// The toolchain, once checked to run in the sandbox.
    pub fn get() -> Result<&'static Toolchain, NoSandbox> {
        static FOUND: OnceLock<Result<Toolchain, NoSandbox>> = OnceLock::new();
        FOUND
            .get_or_init(Toolchain::find)
            .as_ref()
            .map_err(Clone::clone)
    }

    fn find() -> Result<Toolchain, NoSandbox> {
        let bwrap = which("bwrap").ok_or_else(|| NoSandbox("`bwrap` is not installed".into()))?;
        Toolchain::with_bwrap(bwrap)
    }

    /// The toolchain with the bubblewrap at `bwrap`, once a sandbox started.
    fn with_bwrap(bwrap: PathBuf) -> Result<Toolchain, NoSandbox> {
        let rustc = std::env::var_os("CARGO")
            .map(PathBuf::from)
            .and_then(|cargo| Some(cargo.parent()?.join("rustc")))
            .filter(|rustc| rustc.is_file())
            .unwrap_or_else(|| "rustc".into());
        let output = std::process::Command::new(&rustc)
            .args(["--print", "sysroot"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| NoSandbox(format!("cannot run `rustc`: {e}")))?;
        let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if !output.status.success() || !sysroot.join("bin/cargo").is_file() {
            return Err(NoSandbox("no Rust toolchain with cargo was found".into()));
        }
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from(std::env::var_os("HOME")?).join(".cargo")))
            .ok_or_else(|| NoSandbox("neither CARGO_HOME nor HOME is set".into()))?;
        let toolchain = Toolchain {
            bwrap,
            sysroot,
            registry: cargo_home.join("registry"),
        };
        std::fs::create_dir_all(&toolchain.registry)
            .map_err(|e| NoSandbox(format!("cannot create cargo's registry: {e}")))?;
        let probe = tempfile::tempdir()
            .map_err(|e| NoSandbox(format!("cannot make a directory to try it in: {e}")))?;
        let mut command = toolchain.command(
            &Build {
                work: probe.path(),
                read_only: &[],
                cpu_seconds: 10,
            },
            [OsString::from("--version")],
        );
        let status = command
            .as_std_mut()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| NoSandbox(format!("cannot run `bwrap`: {e}")))?;
        if !status.status.success() {
            return Err(NoSandbox(format!(
                "`bwrap` cannot start a sandbox here: {}",
                String::from_utf8_lossy(&status.stderr).trim()
            )));
        }
        Ok(toolchain)
    }

    /// cargo, outside the sandbox: only for `cargo fetch` of a manifest the
    /// server wrote, which downloads crates and runs none of their code.
    pub fn cargo(&self) -> PathBuf {
        self.sysroot.join("bin/cargo")
    }

    /// `cargo <args>` in the sandbox, for `build`; spawn it in a process
    /// group of its own.
    pub fn command(
        &self,
        build: &Build<'_>,
        args: impl IntoIterator<Item = OsString>,
    ) -> tokio::process::Command {
        // One path for every build: cargo's fingerprints hold the path of
        // each crate's source, so the dependencies built once stay fresh.
        let cargo_home = Path::new("/cargo");
        let mut command = tokio::process::Command::new(&self.bwrap);
        command.args([
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--clearenv",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
        ]);
        let ro = |command: &mut tokio::process::Command, path: &Path| {
            command.arg("--ro-bind").arg(path).arg(path);
        };
        ro(&mut command, Path::new("/usr"));
        // What an administrator installed by hand (credentials, a cargo
        // home) is not the system's: hidden, the toolchain shown again below.
        if Path::new("/usr/local").is_dir() {
            command.args(["--tmpfs", "/usr/local"]);
        }
        // Debian's `cc` is a link through /etc/alternatives.
        if Path::new("/etc/alternatives").is_dir() {
            ro(&mut command, Path::new("/etc/alternatives"));
        }
        for top in ["/bin", "/sbin", "/lib", "/lib32", "/lib64"] {
            let path = Path::new(top);
            match std::fs::read_link(path) {
                Ok(target) => {
                    command.arg("--symlink").arg(target).arg(path);
                }
                Err(_) if path.is_dir() => ro(&mut command, path),
                Err(_) => {}
            }
        }
        ro(&mut command, &self.sysroot);
        for path in build.read_only {
            ro(&mut command, path);
        }
        command.arg("--bind").arg(build.work).arg(build.work);
        command
            .arg("--dir")
            .arg(cargo_home)
            .arg("--ro-bind")
            .arg(&self.registry)
            .arg(cargo_home.join("registry"));
        let path = {
            let mut path = OsString::from(self.sysroot.join("bin"));
            path.push(":/usr/bin:/bin");
            path
        };
        command
            .arg("--setenv")
            .arg("PATH")
            .arg(path)
            .arg("--setenv")
            .arg("HOME")
            .arg(build.work)
            .arg("--setenv")
            .arg("CARGO_HOME")
            .arg(cargo_home)
            .arg("--setenv")
            .arg("RUSTC")
            .arg(self.sysroot.join("bin/rustc"))
            .arg("--chdir")
            .arg(build.work)
            .arg("--")
            .arg(self.cargo())
            .args(args);
        let (memory, cpu) = (MEMORY_BYTES, build.cpu_seconds);
        // SAFETY: between fork and exec only setrlimit runs, which is
        // async-signal-safe and touches no memory of the parent's.
        unsafe {
            command.pre_exec(move || {
                limit(libc::RLIMIT_AS, memory)?;
                limit(libc::RLIMIT_CPU, cpu)?;
                limit(libc::RLIMIT_FSIZE, FILE_BYTES)
            });
        }
        command
    }
}

/// Sets a resource limit, soft and hard.
fn limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: `limit` is a valid rlimit for the call's duration.
    if unsafe { libc::setrlimit(resource, &limit) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `program` on `PATH`.
fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_working_sandbox_no_user_code_is_compiled() {
        for (bwrap, why) in [
            ("/nonexistent/bwrap", "cannot run `bwrap`"),
            // A bwrap that starts no sandbox (as in a container without
            // user namespaces).
            ("/bin/false", "`bwrap` cannot start a sandbox here"),
        ] {
            let Err(refused) = Toolchain::with_bwrap(bwrap.into()) else {
                panic!("{bwrap} started a sandbox");
            };
            let message = refused.to_string();
            assert!(
                message.starts_with(
                    "rust-code nodes are compiled only inside a sandbox, and none works on this server: "
                ) && message.contains(why)
                    && message.ends_with("(install bubblewrap, Debian package `bubblewrap`)"),
                "{message}"
            );
        }
    }
}
