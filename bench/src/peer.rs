//! The two Rust clients under test behind one small interface: the project's own
//! (`etcd_v3`) and the `etcd-client` crate. Each is used the way its documentation
//! suggests: ours through one cloned `Client`, the crate through a `KvClient` per caller (its
//! calls take `&mut self`) cloned from one `Client`, so both share one connection.

use std::time::Instant;

use bytes::Bytes;
use etcd_v3 as ours;
use tokio::sync::mpsc::UnboundedSender;

/// A connected client of either kind.
#[derive(Clone)]
pub enum Peer {
    /// The project's client.
    Ours(ours::Client, String),
    /// The `etcd-client` crate.
    Crate(Box<etcd_client::Client>, String),
    /// Transport probe: the generated stub over tonic's `Channel`.
    RawChannel(KvStub<tonic::transport::Channel>),
    /// Transport probe: the generated stub over a bare hyper HTTP/2 connection.
    RawH2(KvStub<crate::raw::H2>),
}

type KvStub<T> = etcd_v3::proto::etcdserverpb::kv_client::KvClient<T>;
use etcd_v3::proto::etcdserverpb as pb;

/// One caller's handle.
pub enum Worker {
    /// The project's client (cheap clone of the shared one).
    Ours(ours::Client),
    /// The crate's KV client (clone sharing the crate client's channel).
    Crate(etcd_client::KvClient),
    /// A transport probe's stub (clone sharing its connection).
    RawChannel(KvStub<tonic::transport::Channel>),
    /// A transport probe's stub (clone sharing its connection).
    RawH2(KvStub<crate::raw::H2>),
}

/// Keeps a watch open while held.
pub enum WatchHandle {
    /// The task reading the watch (ours owns its `Watcher` inside the task).
    Ours(tokio::task::JoinHandle<()>),
    /// The crate's `Watcher` (held: dropping it cancels) and the task reading its stream.
    Crate {
        /// Held only to keep the watch open.
        _watcher: etcd_client::Watcher,
        /// Reads the watch's stream.
        task: tokio::task::JoinHandle<()>,
    },
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        match self {
            WatchHandle::Ours(task) | WatchHandle::Crate { task, .. } => task.abort(),
        }
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Peer {
    /// Connects `which` (`ours` or `etcd-client`) to one endpoint.
    pub async fn connect(which: &str, endpoint: &str) -> Result<Peer, String> {
        match which {
            "ours" => Ok(Peer::Ours(
                ours::Client::connect([endpoint], ours::ConnectOptions::new())
                    .await
                    .map_err(err)?,
                endpoint.to_string(),
            )),
            "etcd-client" => Ok(Peer::Crate(
                Box::new(
                    etcd_client::Client::connect([endpoint], None)
                        .await
                        .map_err(err)?,
                ),
                endpoint.to_string(),
            )),
            "raw-channel" => Ok(Peer::RawChannel(
                crate::raw::channel_connect(endpoint).await?,
            )),
            "raw-h2" => Ok(Peer::RawH2(crate::raw::h2_connect(endpoint).await?)),
            other => Err(format!("unknown client {other} (ours or etcd-client)")),
        }
    }

    /// A second client of the same kind, with a connection of its own.
    pub async fn fresh(&self) -> Result<Peer, String> {
        match self {
            Peer::Ours(_, ep) => Peer::connect("ours", ep).await,
            Peer::Crate(_, ep) => Peer::connect("etcd-client", ep).await,
            Peer::RawChannel(_) | Peer::RawH2(_) => Err("transport probes do only KV".into()),
        }
    }

    /// A handle for one caller.
    pub fn worker(&self) -> Worker {
        match self {
            Peer::Ours(c, _) => Worker::Ours(c.clone()),
            Peer::Crate(c, _) => Worker::Crate(c.kv_client()),
            Peer::RawChannel(k) => Worker::RawChannel(k.clone()),
            Peer::RawH2(k) => Worker::RawH2(k.clone()),
        }
    }

    /// Watches `key` (from now on); sends the receipt time of every event to `seen`.
    pub async fn watch(
        &self,
        key: &[u8],
        seen: UnboundedSender<Instant>,
    ) -> Result<WatchHandle, String> {
        match self {
            Peer::Ours(c, _) => {
                let mut w = c
                    .watch(
                        Bytes::copy_from_slice(key),
                        ours::watch::WatchOptions::new(),
                    )
                    .await
                    .map_err(err)?;
                Ok(WatchHandle::Ours(tokio::spawn(async move {
                    while let Some(Ok(batch)) = w.next().await {
                        let now = Instant::now();
                        for _ in &batch.events {
                            if seen.send(now).is_err() {
                                return;
                            }
                        }
                    }
                })))
            }
            Peer::Crate(c, _) => {
                let (watcher, mut stream) = c
                    .watch_client()
                    .watch(key.to_vec(), None)
                    .await
                    .map_err(err)?;
                let task = tokio::spawn(async move {
                    while let Ok(Some(resp)) = stream.message().await {
                        let now = Instant::now();
                        for _ in resp.events() {
                            if seen.send(now).is_err() {
                                return;
                            }
                        }
                    }
                });
                Ok(WatchHandle::Crate {
                    _watcher: watcher,
                    task,
                })
            }
            Peer::RawChannel(_) | Peer::RawH2(_) => Err("transport probes do only KV".into()),
        }
    }
}

impl Worker {
    /// Puts `key` = `value`.
    pub async fn put(&mut self, key: &[u8], value: Bytes) -> Result<(), String> {
        match self {
            Worker::Ours(c) => c
                .put(key, value, ours::kv::PutOptions::new())
                .await
                .map(drop)
                .map_err(err),
            Worker::Crate(kv) => kv
                .put(key, value.to_vec(), None)
                .await
                .map(drop)
                .map_err(err),
            Worker::RawChannel(k) => k.put(put_req(key, value)).await.map(drop).map_err(err),
            Worker::RawH2(k) => k.put(put_req(key, value)).await.map(drop).map_err(err),
        }
    }

    /// Gets `key`, serializable or linearizable.
    pub async fn get(&mut self, key: &[u8], serializable: bool) -> Result<(), String> {
        match self {
            Worker::Ours(c) => {
                let mut o = ours::kv::GetOptions::new();
                if serializable {
                    o = o.with_serializable();
                }
                c.get(key, o).await.map(drop).map_err(err)
            }
            Worker::Crate(kv) => {
                let o = serializable.then(|| etcd_client::GetOptions::new().with_serializable());
                kv.get(key, o).await.map(drop).map_err(err)
            }
            Worker::RawChannel(k) => k
                .range(range_req(key, serializable))
                .await
                .map(drop)
                .map_err(err),
            Worker::RawH2(k) => k
                .range(range_req(key, serializable))
                .await
                .map(drop)
                .map_err(err),
        }
    }

    /// A txn without compares holding one put (the Go tool's `txn-put --txn-ops=1`).
    pub async fn txn_put(&mut self, key: &[u8], value: Bytes) -> Result<(), String> {
        match self {
            Worker::Ours(c) => {
                let txn = ours::kv::Txn::new().and_then([ours::kv::Op::put(
                    key,
                    value,
                    ours::kv::PutOptions::new(),
                )]);
                c.txn(txn).await.map(drop).map_err(err)
            }
            Worker::Crate(kv) => {
                let txn = etcd_client::Txn::new().and_then([etcd_client::TxnOp::put(
                    key,
                    value.to_vec(),
                    None,
                )]);
                kv.txn(txn).await.map(drop).map_err(err)
            }
            Worker::RawChannel(_) | Worker::RawH2(_) => Err("transport probes do no txn".into()),
        }
    }
}

fn put_req(key: &[u8], value: Bytes) -> pb::PutRequest {
    pb::PutRequest {
        key: Bytes::copy_from_slice(key),
        value,
        ..Default::default()
    }
}

fn range_req(key: &[u8], serializable: bool) -> pb::RangeRequest {
    pb::RangeRequest {
        key: Bytes::copy_from_slice(key),
        serializable,
        ..Default::default()
    }
}
