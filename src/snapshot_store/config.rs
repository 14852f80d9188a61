//! Where snapshots go: the destination of a store and its credentials.
//!
//! Credentials are held in [`Secret`], whose `Debug` prints `<redacted>` and which has no
//! `Display`, so a [`StoreConfig`] can be logged whole without leaking a key.

use std::fmt;
use std::path::PathBuf;

/// A credential value (a key, a secret key, a service-account JSON, a SAS token). Its `Debug`
/// output is `<redacted>`; it has no `Display`; read it with [`Secret::expose`] only where it is
/// handed to the store client.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the store client only: never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret::new(s)
    }
}

/// How a store authenticates. `Ambient` uses what the environment offers (instance or workload
/// identity, the provider's usual environment variables and files).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Credentials {
    /// No explicit credentials: the provider's ambient ones (a local folder needs none).
    #[default]
    Ambient,
    /// An S3 access key pair (with a session token for temporary credentials).
    S3 {
        /// `AWS_ACCESS_KEY_ID`.
        access_key_id: Secret,
        /// `AWS_SECRET_ACCESS_KEY`.
        secret_access_key: Secret,
        /// `AWS_SESSION_TOKEN`, for temporary credentials.
        session_token: Option<Secret>,
    },
    /// A Google service-account key (the JSON file's content).
    GcsServiceAccount {
        /// The service-account JSON.
        json: Secret,
    },
    /// An Azure storage account key.
    AzureAccessKey {
        /// The base64 account key.
        key: Secret,
    },
    /// An Azure shared access signature (the query string, with or without the leading `?`).
    AzureSas {
        /// The SAS query string.
        token: Secret,
    },
}

/// The kind of store and where it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    /// Amazon S3 or an S3-compatible server.
    S3 {
        /// The bucket.
        bucket: String,
        /// The region (`us-east-1` when unset; S3-compatible servers mostly ignore it).
        region: Option<String>,
        /// The endpoint URL of an S3-compatible server (`None`: AWS).
        endpoint: Option<String>,
        /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted ones
        /// (`bucket.endpoint/key`); most S3-compatible servers want path style.
        path_style: bool,
    },
    /// Google Cloud Storage.
    Gcs {
        /// The bucket.
        bucket: String,
        /// The API base URL of a GCS-compatible server (`None`: Google's).
        endpoint: Option<String>,
    },
    /// Azure Blob Storage.
    Azure {
        /// The storage account.
        account: String,
        /// The container.
        container: String,
        /// The account URL, e.g. `http://127.0.0.1:10000/devstoreaccount1` for Azurite
        /// (`None`: `https://<account>.blob.core.windows.net`).
        endpoint: Option<String>,
    },
    /// A folder on the local filesystem (a PVC mounted in a Pod is one).
    Local {
        /// The folder (created if missing).
        path: PathBuf,
    },
}

impl Destination {
    /// A short name of the kind of store (`s3`, `gcs`, `azure`, `local`) for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Destination::S3 { .. } => "s3",
            Destination::Gcs { .. } => "gcs",
            Destination::Azure { .. } => "azure",
            Destination::Local { .. } => "local",
        }
    }

    /// A URL-like name of the destination for status and logs (no credentials):
    /// `s3://bucket`, `gs://bucket`, `azure://account/container`, `file:///path`.
    pub fn url(&self) -> String {
        match self {
            Destination::S3 { bucket, .. } => format!("s3://{bucket}"),
            Destination::Gcs { bucket, .. } => format!("gs://{bucket}"),
            Destination::Azure {
                account, container, ..
            } => format!("azure://{account}/{container}"),
            Destination::Local { path } => format!("file://{}", path.display()),
        }
    }
}

/// Everything needed to open a snapshot store. `Debug` is safe to log: credentials are redacted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Where objects go.
    pub destination: Destination,
    /// A folder-like prefix inside the bucket/container/folder (e.g. `prod/demo`); empty for
    /// the root. Slashes at either end are ignored.
    pub prefix: String,
    /// How to authenticate.
    pub credentials: Credentials,
    /// Allow plain `http://` endpoints (test servers, in-cluster gateways without TLS).
    pub allow_http: bool,
}

impl StoreConfig {
    /// A config with no prefix, ambient credentials and HTTPS only.
    pub fn new(destination: Destination) -> Self {
        StoreConfig {
            destination,
            prefix: String::new(),
            credentials: Credentials::Ambient,
            allow_http: false,
        }
    }

    /// Sets the prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the credentials.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Allows (or not) plain `http://` endpoints.
    pub fn with_allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_every_credential() {
        let creds = [
            Credentials::S3 {
                access_key_id: "AKIDSECRET1".into(),
                secret_access_key: "SECRETKEY2".into(),
                session_token: Some("TOKEN3".into()),
            },
            Credentials::GcsServiceAccount {
                json: "{\"private_key\":\"PEM4\"}".into(),
            },
            Credentials::AzureAccessKey { key: "KEY5".into() },
            Credentials::AzureSas {
                token: "sig=SAS6".into(),
            },
        ];
        for c in creds {
            let cfg = StoreConfig::new(Destination::Local {
                path: "/backups".into(),
            })
            .with_credentials(c);
            let shown = format!("{cfg:?} {cfg:#?}");
            for needle in ["SECRET1", "SECRETKEY2", "TOKEN3", "PEM4", "KEY5", "SAS6"] {
                assert!(!shown.contains(needle), "{needle} leaked in {shown}");
            }
            assert!(shown.contains("<redacted>"), "{shown}");
        }
    }

    #[test]
    fn urls_name_the_destination() {
        let s3 = Destination::S3 {
            bucket: "b".into(),
            region: None,
            endpoint: None,
            path_style: true,
        };
        assert_eq!(s3.url(), "s3://b");
        assert_eq!(s3.kind(), "s3");
        let az = Destination::Azure {
            account: "a".into(),
            container: "c".into(),
            endpoint: None,
        };
        assert_eq!(az.url(), "azure://a/c");
    }
}
