//! Real etcd clusters of 1, 3 or 5 members on free loopback ports.
//!
//! ```ignore
//! let cluster = EtcdCluster::builder().members(3).start()?;
//! let endpoints = cluster.endpoints();
//! cluster.kill(0);            // SIGKILL member 0
//! cluster.restart(0)?;        // start it again on its data dir and wait until healthy
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::bins::{self, EtcdVersion};
use super::ports::{ensure_free, free_port};
use super::process::Proc;
use super::{HarnessError, Result, temp_dir};

/// Builds an [`EtcdCluster`].
#[derive(Debug, Clone)]
pub struct EtcdClusterBuilder {
    members: usize,
    version: EtcdVersion,
    flags_all: Vec<String>,
    flags_member: Vec<(usize, Vec<String>)>,
    ports: Option<Vec<(u16, u16)>>,
    start_timeout: Duration,
    bin_dir: Option<PathBuf>,
}

impl EtcdClusterBuilder {
    /// Number of members (1, 3 or 5 are the usual sizes; any number from 1 to 9 works).
    pub fn members(mut self, n: usize) -> Self {
        self.members = n;
        self
    }
    pub fn version(mut self, v: EtcdVersion) -> Self {
        self.version = v;
        self
    }
    /// An extra flag for every member, e.g. `--quota-backend-bytes=16777216`.
    pub fn flag(mut self, flag: impl Into<String>) -> Self {
        self.flags_all.push(flag.into());
        self
    }
    /// An extra flag for member `i` only.
    pub fn member_flag(mut self, i: usize, flag: impl Into<String>) -> Self {
        match self.flags_member.iter_mut().find(|(m, _)| *m == i) {
            Some((_, f)) => f.push(flag.into()),
            None => self.flags_member.push((i, vec![flag.into()])),
        }
        self
    }
    /// Explicit (client, peer) ports, one pair per member, instead of free ones.
    pub fn ports(mut self, ports: Vec<(u16, u16)>) -> Self {
        self.ports = Some(ports);
        self
    }
    /// Take `etcd` from this folder instead of the provisioned one of the version.
    pub fn bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(dir.into());
        self
    }
    pub fn start_timeout(mut self, t: Duration) -> Self {
        self.start_timeout = t;
        self
    }

    /// Starts every member and waits until all report healthy.
    pub fn start(self) -> Result<EtcdCluster> {
        if self.members == 0 || self.members > 9 {
            return Err(HarnessError::msg(format!(
                "an etcd cluster needs 1 to 9 members, not {}",
                self.members
            )));
        }
        let etcd = match &self.bin_dir {
            Some(d) if d.join("etcd").is_file() => d.join("etcd"),
            Some(d) => {
                return Err(HarnessError::msg(format!(
                    "binary not found: {}",
                    d.join("etcd").display()
                )));
            }
            None => bins::etcd_tool(self.version, "etcd")?,
        };
        let ports = match &self.ports {
            Some(p) if p.len() != self.members => {
                return Err(HarnessError::msg(format!(
                    "{} port pairs given for {} members",
                    p.len(),
                    self.members
                )));
            }
            Some(p) => {
                for (c, pp) in p {
                    ensure_free(*c)?;
                    ensure_free(*pp)?;
                }
                p.clone()
            }
            None => (0..self.members)
                .map(|_| Ok((free_port()?, free_port()?)))
                .collect::<Result<Vec<_>>>()?,
        };
        let dir = temp_dir("etcd")?;
        let token = dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "etcd-test".into());
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (i, (client_port, peer_port)) in ports.into_iter().enumerate() {
            let name = format!("m{i}");
            let data_dir = dir.path().join(&name);
            let mut args = vec![
                format!("--name={name}"),
                format!("--data-dir={}", data_dir.display()),
                format!("--listen-client-urls=http://127.0.0.1:{client_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{client_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-cluster={initial_cluster}"),
                "--initial-cluster-state=new".to_string(),
                format!("--initial-cluster-token={token}"),
            ];
            if self.version != EtcdVersion::V3_4 {
                args.push("--unsafe-no-fsync=true".to_string());
            } else {
                args.push("--logger=zap".to_string());
            }
            args.extend(self.flags_all.iter().cloned());
            if let Some((_, f)) = self.flags_member.iter().find(|(m, _)| *m == i) {
                args.extend(f.iter().cloned());
            }
            members.push(EtcdMember {
                name,
                client_port,
                peer_port,
                log: dir.path().join(format!("m{i}.log")),
                data_dir,
                args,
                proc: None,
                etcd: etcd.clone(),
            });
        }
        let mut cluster = EtcdCluster {
            members,
            version: self.version,
            start_timeout: self.start_timeout,
            dir,
        };
        for m in &mut cluster.members {
            m.spawn()?;
        }
        cluster.wait_healthy()?;
        Ok(cluster)
    }
}

/// One member of an [`EtcdCluster`].
#[derive(Debug)]
pub struct EtcdMember {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    args: Vec<String>,
    proc: Option<Proc>,
    etcd: PathBuf,
}

impl EtcdMember {
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
    pub fn client_addr(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
    fn spawn(&mut self) -> Result<()> {
        self.proc = Some(Proc::spawn(&self.name, &self.etcd, &self.args, &self.log)?);
        Ok(())
    }
    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(Proc::is_running)
    }
    /// Whether the member answers `/health` with `"health":"true"`.
    pub fn healthy(&self) -> bool {
        http_get(self.client_port, "/health").is_ok_and(|b| b.contains("\"health\":\"true\""))
    }
    pub fn log_tail(&self, lines: usize) -> String {
        super::process::log_tail(&self.log, lines)
    }
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(Proc::pid)
    }
}

/// A running etcd cluster; every member is killed and every directory removed on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<EtcdMember>,
    version: EtcdVersion,
    start_timeout: Duration,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    pub fn builder() -> EtcdClusterBuilder {
        EtcdClusterBuilder {
            members: 1,
            version: EtcdVersion::V3_5,
            flags_all: Vec::new(),
            flags_member: Vec::new(),
            ports: None,
            start_timeout: Duration::from_secs(30),
            bin_dir: None,
        }
    }

    /// A started single-member 3.5 cluster.
    pub fn single() -> Result<EtcdCluster> {
        Self::builder().start()
    }

    pub fn version(&self) -> EtcdVersion {
        self.version
    }
    pub fn len(&self) -> usize {
        self.members.len()
    }
    pub fn member(&self, i: usize) -> &EtcdMember {
        &self.members[i]
    }
    pub fn members(&self) -> &[EtcdMember] {
        &self.members
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    /// Starts a new member `name` on `client_port`/`peer_port` that joins the running cluster
    /// (`--initial-cluster-state=existing`); it must already have been added with MemberAdd
    /// under `http://127.0.0.1:<peer_port>`. Returns its index; does not wait for it.
    #[allow(dead_code)]
    pub fn join_member(&mut self, name: &str, client_port: u16, peer_port: u16) -> Result<usize> {
        let initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .chain(std::iter::once(format!(
                "{name}=http://127.0.0.1:{peer_port}"
            )))
            .collect::<Vec<_>>()
            .join(",");
        let data_dir = self.dir.path().join(name);
        let mut args = vec![
            format!("--name={name}"),
            format!("--data-dir={}", data_dir.display()),
            format!("--listen-client-urls=http://127.0.0.1:{client_port}"),
            format!("--advertise-client-urls=http://127.0.0.1:{client_port}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-cluster={initial_cluster}"),
            "--initial-cluster-state=existing".to_string(),
        ];
        if self.version != EtcdVersion::V3_4 {
            args.push("--unsafe-no-fsync=true".to_string());
        } else {
            args.push("--logger=zap".to_string());
        }
        let etcd = self
            .members
            .first()
            .map(|m| m.etcd.clone())
            .ok_or_else(|| HarnessError::msg("a cluster without members"))?;
        let mut member = EtcdMember {
            name: name.to_string(),
            client_port,
            peer_port,
            log: self.dir.path().join(format!("{name}.log")),
            data_dir,
            args,
            proc: None,
            etcd,
        };
        member.spawn()?;
        self.members.push(member);
        Ok(self.members.len() - 1)
    }

    /// `http://127.0.0.1:<port>` of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdMember::client_url).collect()
    }

    /// Waits until every running member answers `/health` with true.
    pub fn wait_healthy(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.start_timeout;
        loop {
            let mut all = true;
            for m in &mut self.members {
                if m.proc.is_none() {
                    continue;
                }
                if let Some(status) = m.proc.as_mut().and_then(Proc::exited) {
                    return Err(HarnessError::msg(format!(
                        "etcd member {} exited ({status}) while starting; last log lines:\n{}",
                        m.name,
                        m.log_tail(15)
                    )));
                }
                if !m.healthy() {
                    all = false;
                }
            }
            if all {
                return Ok(());
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .members
                    .iter()
                    .map(|m| format!("--- {} ---\n{}", m.name, m.log_tail(10)))
                    .collect();
                return Err(HarnessError::msg(format!(
                    "etcd cluster not healthy after {:?}:\n{}",
                    self.start_timeout,
                    logs.join("\n")
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].proc.take() {
            p.kill();
        }
    }

    /// SIGTERM member `i` and wait for it to exit.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].proc.take() {
            p.stop(Duration::from_secs(10));
        }
    }

    /// SIGSTOP member `i` (it keeps its sockets but answers nothing).
    pub fn pause(&self, i: usize) -> Result<()> {
        self.proc_of(i)?.signal(libc::SIGSTOP)
    }

    /// SIGCONT member `i`.
    pub fn resume(&self, i: usize) -> Result<()> {
        self.proc_of(i)?.signal(libc::SIGCONT)
    }

    fn proc_of(&self, i: usize) -> Result<&Proc> {
        self.members[i].proc.as_ref().ok_or_else(|| {
            HarnessError::msg(format!("member {} is not running", self.members[i].name))
        })
    }

    /// Starts a stopped or killed member again on its data directory, and waits until the
    /// cluster is healthy.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        if self.members[i].is_running() {
            self.stop(i);
        }
        self.members[i].spawn()?;
        self.wait_healthy()
    }

    /// Starts a stopped member without waiting.
    pub fn start_member(&mut self, i: usize) -> Result<()> {
        self.members[i].spawn()
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        self.members[i].is_running()
    }
}

/// A minimal HTTP/1.0 GET against 127.0.0.1:`port`, returning the body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    Ok(buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}
