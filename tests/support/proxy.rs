//! A TCP fault proxy to put in front of an etcd member (like the "bridge" of etcd's own
//! integration tests). Modes:
//!
//! - [`Mode::Pass`]: forward bytes both ways.
//! - [`Mode::Drop`]: close every open connection and close new ones at once.
//! - [`Mode::Blackhole`]: accept connections but forward nothing; open connections stall.
//!
//! It counts connections, bytes, and the HTTP/2 frames the client sends (HEADERS frames = gRPC
//! calls or streams opened, DATA frames = request messages), so tests can measure, say, the
//! keepalive cadence at the wire. It runs on its own thread and runtime, so it works under any
//! test runtime, and stops when dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{HarnessError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Drop,
    Blackhole,
}

/// Counters of what went through the proxy.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    pub headers_frames_up: AtomicU64,
    pub data_frames_up: AtomicU64,
    /// When not 0: once this many bytes went to the client, every connection stalls until the
    /// mode changes (a stream cut mid-way at a known point).
    pub stall_down_after: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub connections: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub headers_frames_up: u64,
    pub data_frames_up: u64,
}

#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    mode: watch::Sender<Mode>,
    counters: Arc<Counters>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `target` (`host:port`).
    pub fn start(target: &str) -> Result<FaultProxy> {
        let target: SocketAddr = target
            .trim_start_matches("http://")
            .parse()
            .map_err(|e| HarnessError::msg(format!("bad proxy target {target:?}: {e}")))?;
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| HarnessError::io("binding the proxy", e))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| HarnessError::io("proxy socket", e))?;
        let addr = std_listener
            .local_addr()
            .map_err(|e| HarnessError::io("proxy address", e))?;
        let (mode, mode_rx) = watch::channel(Mode::Pass);
        let counters = Arc::new(Counters::default());
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(std_listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = accept_loop(listener, target, mode_rx, c) => {}
                        _ = stop_rx => {}
                    }
                });
                rt.shutdown_background();
            })
            .map_err(|e| HarnessError::io("spawning the proxy thread", e))?;
        Ok(FaultProxy {
            addr,
            target,
            mode,
            counters,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `127.0.0.1:<port>` of the proxy.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }
    /// `http://127.0.0.1:<port>` of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn target(&self) -> SocketAddr {
        self.target
    }
    pub fn set_mode(&self, m: Mode) {
        self.mode.send_replace(m);
    }
    pub fn pass(&self) {
        self.set_mode(Mode::Pass)
    }
    /// Close all connections and refuse new ones until [`FaultProxy::resume`].
    pub fn drop_all(&self) {
        self.set_mode(Mode::Drop)
    }
    /// Accept but stall until [`FaultProxy::resume`].
    pub fn blackhole(&self) {
        self.set_mode(Mode::Blackhole)
    }
    pub fn resume(&self) {
        self.set_mode(Mode::Pass)
    }
    /// Stalls every connection once `bytes` went to the clients (0: never), until the mode
    /// changes.
    pub fn stall_down_after(&self, bytes: u64) {
        self.counters
            .stall_down_after
            .store(bytes, Ordering::Relaxed);
    }
    pub fn counts(&self) -> Counts {
        let c = &self.counters;
        Counts {
            connections: c.connections.load(Ordering::Relaxed),
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
            headers_frames_up: c.headers_frames_up.load(Ordering::Relaxed),
            data_frames_up: c.data_frames_up.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    mode: watch::Receiver<Mode>,
    counters: Arc<Counters>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let current = *mode.borrow();
        match current {
            Mode::Drop => drop(client),
            Mode::Blackhole | Mode::Pass => {
                let mode = mode.clone();
                let counters = counters.clone();
                tokio::spawn(async move {
                    serve(client, target, mode, counters).await;
                });
            }
        }
    }
}

/// Forwards one connection, obeying mode changes.
async fn serve(
    client: TcpStream,
    target: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    counters: Arc<Counters>,
) {
    let _ = client.set_nodelay(true);
    // A blackholed connection waits here until the mode changes.
    loop {
        let m = *mode.borrow_and_update();
        match m {
            Mode::Pass => break,
            Mode::Drop => return,
            Mode::Blackhole => {
                if mode.changed().await.is_err() {
                    return;
                }
            }
        }
    }
    let Ok(upstream) = TcpStream::connect(target).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let mut up_buf = vec![0u8; 64 * 1024];
    let mut down_buf = vec![0u8; 64 * 1024];
    let mut frames = FrameCounter::default();
    loop {
        let m = *mode.borrow_and_update();
        match m {
            Mode::Drop => return,
            Mode::Blackhole => {
                if mode.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Mode::Pass => {}
        }
        tokio::select! {
            r = cr.read(&mut up_buf) => {
                let n = match r { Ok(0) | Err(_) => return, Ok(n) => n };
                counters.bytes_up.fetch_add(n as u64, Ordering::Relaxed);
                frames.feed(&up_buf[..n], &counters);
                if uw.write_all(&up_buf[..n]).await.is_err() { return; }
            }
            r = ur.read(&mut down_buf) => {
                let n = match r { Ok(0) | Err(_) => return, Ok(n) => n };
                let total = counters.bytes_down.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                if cw.write_all(&down_buf[..n]).await.is_err() { return; }
                let limit = counters.stall_down_after.load(Ordering::Relaxed);
                if limit > 0 && total >= limit && mode.changed().await.is_err() {
                    return;
                }
            }
            c = mode.changed() => { if c.is_err() { return; } }
        }
    }
}

/// Counts HTTP/2 frames in the client-to-server byte stream.
#[derive(Default)]
struct FrameCounter {
    preface_left: Option<usize>,
    header: Vec<u8>,
    skip: usize,
}

impl FrameCounter {
    fn feed(&mut self, mut data: &[u8], counters: &Counters) {
        let preface = self.preface_left.get_or_insert(24);
        if *preface > 0 {
            let n = (*preface).min(data.len());
            *preface -= n;
            data = &data[n..];
        }
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            let need = 9 - self.header.len();
            let n = need.min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() == 9 {
                let len = (usize::from(self.header[0]) << 16)
                    | (usize::from(self.header[1]) << 8)
                    | usize::from(self.header[2]);
                match self.header[3] {
                    0x0 if len > 0 => {
                        counters.data_frames_up.fetch_add(1, Ordering::Relaxed);
                    }
                    0x1 => {
                        counters.headers_frames_up.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
                self.skip = len;
                self.header.clear();
            }
        }
    }
}
