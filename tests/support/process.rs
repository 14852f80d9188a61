//! A child process owned by the harness: output to a log file, killed on drop, and bound to the
//! test process's life with `PDEATHSIG`.

#![allow(unsafe_code)]

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{HarnessError, Result};

/// A running (or exited) child process.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Spawns `program args` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> Result<Proc> {
        Self::spawn_env(name, program, args, &[], log)
    }

    /// Like [`Proc::spawn`], with extra environment variables.
    pub fn spawn_env(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        log: &Path,
    ) -> Result<Proc> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| HarnessError::io(format!("opening log {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| HarnessError::io("cloning a log handle", e))?;
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| HarnessError::io(format!("starting {name} ({})", program.display()), e))?;
        Ok(Proc {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(description)` when the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => Some(status.to_string()),
            Some(Ok(None)) => None,
            Some(Err(e)) => Some(format!("unknown ({e})")),
            None => Some("not running".to_string()),
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.exited().is_none()
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the process's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    pub fn signal(&self, sig: i32) -> Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| HarnessError::msg(format!("{} is not running", self.name)))?;
        // SAFETY: kill(2) on a pid we spawned and have not reaped.
        let rc = unsafe { libc::kill(pid as i32, sig) };
        if rc == 0 {
            Ok(())
        } else {
            Err(HarnessError::io(
                format!("signalling {}", self.name),
                std::io::Error::last_os_error(),
            ))
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        if self.child.is_none() {
            return;
        }
        if self.is_running() {
            let _ = self.signal(libc::SIGTERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && self.is_running() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            // Continue a stopped process first so that it can die.
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGCONT);
            }
        }
        self.kill();
    }
}

pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
