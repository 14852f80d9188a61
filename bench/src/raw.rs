//! Transport probes, not clients: the generated KV stub alone over tonic's `Channel`
//! (`raw-channel`), and over a bare hyper HTTP/2 connection without tonic's `Buffer` task
//! (`raw-h2`). They show how much of a client's CPU per call is the transport: run them with
//! `bench-client --client raw-channel|raw-h2 --workload put|get-s|get-l`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use etcd_v3::proto::etcdserverpb::kv_client::KvClient;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::body::Body;

/// A tower service sending each request straight into one hyper HTTP/2 connection.
#[derive(Clone)]
pub struct H2 {
    send: SendRequest<Body>,
    origin: http::uri::Authority,
}

impl tower::Service<http::Request<Body>> for H2 {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.send.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTP);
        parts.authority = Some(self.origin.clone());
        parts.path_and_query = Some(path);
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
        let fut = self.send.send_request(req);
        Box::pin(fut)
    }
}

/// Opens one HTTP/2 connection to `endpoint` (`host:port`) with the client's window sizes.
pub async fn h2_connect(endpoint: &str) -> Result<KvClient<H2>, String> {
    let tcp = tokio::net::TcpStream::connect(endpoint)
        .await
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let origin = endpoint
        .parse::<http::uri::Authority>()
        .map_err(|e| e.to_string())?;
    Ok(KvClient::new(H2 { send, origin }))
}

/// The generated stub over tonic's `Channel` (what every tonic client uses).
pub async fn channel_connect(
    endpoint: &str,
) -> Result<KvClient<tonic::transport::Channel>, String> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(KvClient::new(ch))
}
