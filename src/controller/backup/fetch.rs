//! `etcd-operator snapshot fetch`: reads one snapshot object from a store into a file (decrypted,
//! its SHA-256 trailer checked), for a restore Pod's init container. The store is described by
//! arguments ([`fetch_args`] writes them from a [`BackupTarget`], [`FetchArgs::target`] reads
//! them back); credentials and the encryption key come from environment variables only (a
//! Secret's keys, `ETCD_OPERATOR_CREDENTIAL_<key>` and [`ENCRYPTION_KEY_ENV`]), never from
//! arguments, and are never printed.

use std::path::PathBuf;

use crate::snapshot_store::{Destination, Downloaded, SnapshotStore};

use super::target::{BackupTarget, ReadSecrets, SecretData, store_config};
use super::{OpenError, RestoreError};

/// The prefix of the environment variables holding the credentials Secret's keys
/// (`ETCD_OPERATOR_CREDENTIAL_accessKeyId`, ...).
pub const CREDENTIAL_ENV_PREFIX: &str = "ETCD_OPERATOR_CREDENTIAL_";
/// The environment variable holding the encryption key.
pub const ENCRYPTION_KEY_ENV: &str = "ETCD_OPERATOR_ENCRYPTION_KEY";
/// The name the credentials are known by in messages (no Secret is read by the command).
const CREDENTIALS: &str = "credentials";
/// See [`CREDENTIALS`].
const KEY: &str = "encryption-key";

/// The arguments of `etcd-operator snapshot fetch`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct FetchArgs {
    /// The kind of store: s3, gcs or azure.
    #[arg(long)]
    pub store: String,
    /// The bucket (s3, gcs) or container (azure).
    #[arg(long)]
    pub bucket: String,
    /// The prefix the object is under.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// The store's endpoint URL.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// The S3 region.
    #[arg(long)]
    pub region: Option<String>,
    /// Path-style S3 requests.
    #[arg(long)]
    pub path_style: bool,
    /// The Azure storage account (else the credential `accountName`).
    #[arg(long)]
    pub account: Option<String>,
    /// Read the credentials from `ETCD_OPERATOR_CREDENTIAL_<key>` variables.
    #[arg(long)]
    pub credentials_from_env: bool,
    /// Decrypt with the key in `ETCD_OPERATOR_ENCRYPTION_KEY`.
    #[arg(long)]
    pub key_from_env: bool,
    /// The object's name under the prefix.
    #[arg(long)]
    pub object: String,
    /// The file to write.
    #[arg(long)]
    pub output: PathBuf,
    /// Also write a failure's message to this file (a Pod's `terminationMessagePath`).
    #[arg(long)]
    pub termination_log: Option<PathBuf>,
}

impl FetchArgs {
    /// The store the arguments describe.
    pub fn target(&self) -> Result<BackupTarget, String> {
        let destination = match self.store.as_str() {
            "s3" => Destination::S3 {
                bucket: self.bucket.clone(),
                region: self.region.clone(),
                endpoint: self.endpoint.clone(),
                path_style: self.path_style,
            },
            "gcs" => Destination::Gcs {
                bucket: self.bucket.clone(),
                endpoint: self.endpoint.clone(),
            },
            "azure" => Destination::Azure {
                account: self.account.clone().unwrap_or_default(),
                container: self.bucket.clone(),
                endpoint: self.endpoint.clone(),
            },
            other => return Err(format!("--store {other}: use s3, gcs or azure")),
        };
        Ok(BackupTarget {
            destination,
            prefix: self.prefix.clone(),
            credentials_secret: self.credentials_from_env.then(|| CREDENTIALS.to_owned()),
            key_secret: self.key_from_env.then(|| KEY.to_owned()),
            field: "spec.bootstrap.restore",
        })
    }
}

/// The arguments (after `snapshot fetch`) that fetch `object` of `target` into `output`; `None`
/// for a local folder, which has no Pod to be fetched in.
pub fn fetch_args(target: &BackupTarget, object: &str, output: &str) -> Option<Vec<String>> {
    let mut args: Vec<String> = Vec::new();
    let mut arg = |k: &str, v: &str| {
        args.push(format!("--{k}"));
        args.push(v.to_owned());
    };
    match &target.destination {
        Destination::S3 {
            bucket,
            region,
            endpoint,
            path_style,
        } => {
            arg("store", "s3");
            arg("bucket", bucket);
            if let Some(r) = region {
                arg("region", r);
            }
            if let Some(e) = endpoint {
                arg("endpoint", e);
            }
            if *path_style {
                args.push("--path-style".to_owned());
            }
        }
        Destination::Gcs { bucket, endpoint } => {
            arg("store", "gcs");
            arg("bucket", bucket);
            if let Some(e) = endpoint {
                arg("endpoint", e);
            }
        }
        Destination::Azure {
            account,
            container,
            endpoint,
        } => {
            arg("store", "azure");
            arg("bucket", container);
            if !account.is_empty() {
                arg("account", account);
            }
            if let Some(e) = endpoint {
                arg("endpoint", e);
            }
        }
        Destination::Local { .. } => return None,
    }
    let mut arg = |k: &str, v: &str| {
        args.push(format!("--{k}"));
        args.push(v.to_owned());
    };
    arg("prefix", &target.prefix);
    arg("object", object);
    arg("output", output);
    if target.credentials_secret.is_some() {
        args.push("--credentials-from-env".to_owned());
    }
    if target.key_secret.is_some() {
        args.push("--key-from-env".to_owned());
    }
    Some(args)
}

/// Why `snapshot fetch` failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The arguments do not describe a store.
    #[error("{0}")]
    Args(String),
    /// The store could not be opened or the object read (missing, corrupt, wrong key).
    #[error("{0}")]
    Restore(#[from] RestoreError),
}

/// Fetches the object `args` names into its output file, the credentials and key taken from
/// `env` (name, value pairs, as `std::env::vars_os` gives them).
pub async fn fetch(
    args: &FetchArgs,
    env: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> Result<Downloaded, FetchError> {
    let target = args.target().map_err(FetchError::Args)?;
    let mut credentials = std::collections::BTreeMap::new();
    let mut key = std::collections::BTreeMap::new();
    for (name, value) in env {
        if let Some(k) = name.strip_prefix(CREDENTIAL_ENV_PREFIX) {
            credentials.insert(k.to_owned(), value);
        } else if name == ENCRYPTION_KEY_ENV {
            key.insert(super::target::ENCRYPTION_KEY.to_owned(), value);
        }
    }
    let mut secrets = ReadSecrets::new();
    if args.credentials_from_env {
        secrets.insert(CREDENTIALS.to_owned(), Some(SecretData::new(credentials)));
    }
    if args.key_from_env {
        secrets.insert(
            KEY.to_owned(),
            (!key.is_empty()).then(|| SecretData::new(key)),
        );
    }
    let (config, key) = store_config(&target, "env", &secrets)
        .map_err(|e| RestoreError::from(OpenError::Credentials(e)))?;
    let store =
        SnapshotStore::open(&config).map_err(|e| RestoreError::from(OpenError::Store(e)))?;
    let store = match key {
        Some(key) => store.with_encryption(key),
        None => store,
    };
    store
        .download_to_file(&args.object, &args.output)
        .await
        .map_err(|e| FetchError::Restore(RestoreError::Store(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        fetch: FetchArgs,
    }

    fn round_trip(target: &BackupTarget) -> BackupTarget {
        let args = fetch_args(
            target,
            "demo-20261122T073005Z-r812.db",
            "/var/lib/etcd/s.db",
        )
        .expect("a store");
        let cli =
            Cli::try_parse_from(std::iter::once("fetch".to_owned()).chain(args)).expect("parses");
        assert_eq!(cli.fetch.object, "demo-20261122T073005Z-r812.db");
        assert_eq!(cli.fetch.output, PathBuf::from("/var/lib/etcd/s.db"));
        cli.fetch.target().expect("a target")
    }

    #[test]
    fn arguments_round_trip_every_store() {
        let with = |destination| BackupTarget {
            destination,
            prefix: "ns/demo".into(),
            credentials_secret: Some(CREDENTIALS.into()),
            key_secret: Some(KEY.into()),
            field: "spec.bootstrap.restore",
        };
        for d in [
            Destination::S3 {
                bucket: "b".into(),
                region: Some("eu-west-1".into()),
                endpoint: Some("http://s3:7070".into()),
                path_style: true,
            },
            Destination::Gcs {
                bucket: "g".into(),
                endpoint: None,
            },
            Destination::Azure {
                account: "acct".into(),
                container: "c".into(),
                endpoint: Some("http://az:10000/acct".into()),
            },
        ] {
            let t = with(d);
            assert_eq!(round_trip(&t), t);
        }
        let plain = BackupTarget {
            credentials_secret: None,
            key_secret: None,
            ..with(Destination::Gcs {
                bucket: "g".into(),
                endpoint: None,
            })
        };
        assert_eq!(round_trip(&plain), plain);
        assert_eq!(
            fetch_args(&BackupTarget::folder("/x"), "o", "/f"),
            None,
            "a local folder has no Pod to fetch it in"
        );
    }

    #[tokio::test]
    async fn a_missing_credential_is_named_without_a_value() {
        let args = FetchArgs {
            store: "s3".into(),
            bucket: "b".into(),
            prefix: String::new(),
            endpoint: Some("http://127.0.0.1:1".into()),
            region: None,
            path_style: true,
            account: None,
            credentials_from_env: true,
            key_from_env: false,
            object: "o.db".into(),
            output: std::env::temp_dir().join("never-written.db"),
            termination_log: None,
        };
        let env = [(
            format!("{CREDENTIAL_ENV_PREFIX}accessKeyId"),
            b"AKIA-SECRET-VALUE".to_vec(),
        )];
        let e = fetch(&args, env).await.expect_err("no secret access key");
        let text = e.to_string();
        assert!(text.contains("secretAccessKey"), "{text}");
        assert!(!text.contains("AKIA-SECRET-VALUE"), "{text}");
    }
}
