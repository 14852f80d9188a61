//! Where a schedule's snapshots go, read from `spec.backup` (pure), and the store configuration
//! once the named Secrets are read (pure too: the Secret values are passed in).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::api::{BackupDestination, BackupEncryption, BackupSpec};
use crate::snapshot_store::{Credentials, Destination, EncryptionKey, StoreConfig};

/// The key of the encryption key in `spec.backup.encryption.keySecret`.
pub const ENCRYPTION_KEY: &str = "key";
/// S3 credential keys.
pub const S3_ACCESS_KEY_ID: &str = "accessKeyId";
/// See [`S3_ACCESS_KEY_ID`].
pub const S3_SECRET_ACCESS_KEY: &str = "secretAccessKey";
/// See [`S3_ACCESS_KEY_ID`].
pub const S3_SESSION_TOKEN: &str = "sessionToken";
/// The GCS credential key.
pub const GCS_SERVICE_ACCOUNT_JSON: &str = "serviceAccountJson";
/// Azure credential keys.
pub const AZURE_ACCOUNT_KEY: &str = "accountKey";
/// See [`AZURE_ACCOUNT_KEY`].
pub const AZURE_SAS_TOKEN: &str = "sasToken";
/// See [`AZURE_ACCOUNT_KEY`].
pub const AZURE_ACCOUNT_NAME: &str = "accountName";

/// The keys and values of a Secret. `Debug` shows the keys only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretData(BTreeMap<String, Vec<u8>>);

impl SecretData {
    /// Wraps key/value pairs.
    pub fn new(data: BTreeMap<String, Vec<u8>>) -> Self {
        SecretData(data)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.0.get(key).map(Vec::as_slice)
    }

    /// The keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

/// Where a schedule's snapshots go, as the spec says (no secret values).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackupTarget {
    /// The store (for Azure, an empty account means "the Secret's `accountName`").
    pub destination: Destination,
    /// The prefix inside the bucket or container (empty for a local folder).
    pub prefix: String,
    /// The Secret with the store's credentials; `None`: ambient credentials.
    pub credentials_secret: Option<String>,
    /// The Secret with the encryption key; `None`: no encryption.
    pub key_secret: Option<String>,
    /// The spec field the target was read from (`spec.backup`, `spec.bootstrap.restore`), to
    /// name the fields of the Secrets in errors.
    pub field: &'static str,
}

impl BackupTarget {
    /// A local folder.
    pub fn folder(path: impl Into<PathBuf>) -> Self {
        BackupTarget {
            destination: Destination::Local { path: path.into() },
            prefix: String::new(),
            credentials_secret: None,
            key_secret: None,
            field: "spec.backup",
        }
    }

    /// The same target, read from the spec field `field`.
    pub fn from_field(self, field: &'static str) -> Self {
        BackupTarget { field, ..self }
    }

    /// Whether snapshots go to a local folder.
    pub fn is_local(&self) -> bool {
        matches!(self.destination, Destination::Local { .. })
    }

    /// The Secrets this target reads, in the order they are read.
    pub fn secrets(&self) -> Vec<&str> {
        self.credentials_secret
            .iter()
            .chain(self.key_secret.iter())
            .map(String::as_str)
            .collect()
    }
}

/// Why a local folder cannot be used by a runtime, or how a relative one is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Folders {
    /// Folders are allowed: relative paths are taken from `base`; with no destination at all
    /// snapshots go to `default`.
    Allowed {
        /// What a relative folder is relative to.
        base: PathBuf,
        /// The folder when the spec names no destination.
        default: PathBuf,
    },
    /// Folders are refused (the Kubernetes runtime: the operator Pod has no volume for them).
    Refused,
}

/// What `spec.backup` is refused with in a runtime without folders.
pub const FOLDER_REFUSED: &str = "spec.backup: a local folder (destination.local or directory) \
cannot be used by the Kubernetes runtime, whose Pod has no volume for it; use destination.s3, \
gcs or azure; no snapshot is taken";
/// What `spec.backup` without a destination is refused with in a runtime without folders.
pub const DESTINATION_REQUIRED: &str = "spec.backup.destination is required in Kubernetes (s3, \
gcs or azure): the operator Pod has no volume for a local folder; no snapshot is taken";

/// The target `backup` asks for in a runtime with `folders`, the default prefix being
/// `<namespace>/<cluster>`; or why this runtime cannot take it.
pub fn target(
    backup: &BackupSpec,
    folders: &Folders,
    namespace: &str,
    cluster: &str,
) -> Result<BackupTarget, &'static str> {
    let default_prefix = || format!("{namespace}/{cluster}");
    let key_secret = backup.encryption.as_ref().map(|e| e.key_secret.clone());
    let folder = |dir: &str| match folders {
        Folders::Allowed { base, .. } => Ok(BackupTarget {
            key_secret: key_secret.clone(),
            ..BackupTarget::folder(super::super::validate::resolve(base, dir))
        }),
        Folders::Refused => Err(FOLDER_REFUSED),
    };
    let Some(d) = &backup.destination else {
        return match (&backup.directory, folders) {
            (Some(dir), _) => folder(dir),
            (None, Folders::Allowed { default, .. }) => Ok(BackupTarget {
                key_secret,
                ..BackupTarget::folder(default.clone())
            }),
            (None, Folders::Refused) => Err(DESTINATION_REQUIRED),
        };
    };
    store_target(d, backup.encryption.as_ref(), folders, default_prefix())
}

/// The target of a store `d` (with `encryption`), the prefix being `default_prefix` unless the
/// store names one; or why this runtime (with `folders`) cannot use it.
pub fn store_target(
    d: &BackupDestination,
    encryption: Option<&BackupEncryption>,
    folders: &Folders,
    default_prefix: String,
) -> Result<BackupTarget, &'static str> {
    let prefix = |p: &Option<String>| p.clone().unwrap_or_else(|| default_prefix.clone());
    let key_secret = encryption.map(|e| e.key_secret.clone());
    let folder = |dir: &str| match folders {
        Folders::Allowed { base, .. } => Ok(BackupTarget {
            key_secret: key_secret.clone(),
            ..BackupTarget::folder(super::super::validate::resolve(base, dir))
        }),
        Folders::Refused => Err(FOLDER_REFUSED),
    };
    let remote = |destination: Destination, prefix: String| BackupTarget {
        destination,
        prefix,
        credentials_secret: d.credentials_secret.clone(),
        key_secret: key_secret.clone(),
        field: "spec.backup",
    };
    if let Some(s3) = &d.s3 {
        return Ok(remote(
            Destination::S3 {
                bucket: s3.bucket.clone(),
                region: s3.region.clone(),
                endpoint: s3.endpoint.clone(),
                path_style: s3.force_path_style.unwrap_or(s3.endpoint.is_some()),
            },
            prefix(&s3.prefix),
        ));
    }
    if let Some(gcs) = &d.gcs {
        return Ok(remote(
            Destination::Gcs {
                bucket: gcs.bucket.clone(),
                endpoint: gcs.endpoint.clone(),
            },
            prefix(&gcs.prefix),
        ));
    }
    if let Some(az) = &d.azure {
        return Ok(remote(
            Destination::Azure {
                account: az.account.clone().unwrap_or_default(),
                container: az.container.clone(),
                endpoint: az.endpoint.clone(),
            },
            prefix(&az.prefix),
        ));
    }
    match &d.local {
        Some(local) => folder(&local.directory),
        // Refused by admission (exactly one store).
        None => Err("spec.backup.destination names no store"),
    }
}

/// Why the store cannot be opened from the Secrets: a Secret or one of its keys is missing or
/// unusable. Names the Secret and the key, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// The Secret does not exist.
    #[error("Secret {namespace}/{name} (named by {field}) does not exist")]
    MissingSecret {
        /// The cluster's namespace.
        namespace: String,
        /// The Secret.
        name: String,
        /// The spec field naming it.
        field: String,
    },
    /// A key the store needs is not in the Secret.
    #[error("Secret {namespace}/{name} has no key {key} ({why})")]
    MissingKey {
        /// The cluster's namespace.
        namespace: String,
        /// The Secret.
        name: String,
        /// The key.
        key: &'static str,
        /// What it is for.
        why: &'static str,
    },
    /// A key's value cannot be used.
    #[error("Secret {namespace}/{name}, key {key}: {why}")]
    BadValue {
        /// The cluster's namespace.
        namespace: String,
        /// The Secret.
        name: String,
        /// The key.
        key: &'static str,
        /// What is wrong with it.
        why: String,
    },
}

/// The Secrets read for a target, by name (`None`: the Secret does not exist).
pub type ReadSecrets = BTreeMap<String, Option<SecretData>>;

/// The store configuration and encryption key of `target`, from the Secrets it names (read into
/// `secrets`, in the cluster's `namespace`).
pub fn store_config(
    target: &BackupTarget,
    namespace: &str,
    secrets: &ReadSecrets,
) -> Result<(StoreConfig, Option<EncryptionKey>), CredentialsError> {
    let secret = |name: &str, field: String| {
        secrets
            .get(name)
            .and_then(Option::as_ref)
            .ok_or_else(|| CredentialsError::MissingSecret {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                field,
            })
    };
    let missing = |name: &str, key: &'static str, why: &'static str| CredentialsError::MissingKey {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        key,
        why,
    };
    let bad = |name: &str, key: &'static str, why: String| CredentialsError::BadValue {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        key,
        why,
    };
    let text = |data: &SecretData, name: &str, key: &'static str| -> Result<Option<String>, _> {
        data.get(key)
            .map(|v| {
                String::from_utf8(v.to_vec())
                    .map(|s| s.trim().to_owned())
                    .map_err(|_| bad(name, key, "not UTF-8 text".to_owned()))
            })
            .transpose()
    };
    let mut destination = target.destination.clone();
    let credentials = match &target.credentials_secret {
        None => Credentials::Ambient,
        Some(name) => {
            let data = secret(
                name,
                format!("{}.destination.credentialsSecret", target.field),
            )?;
            match &mut destination {
                Destination::S3 { .. } => Credentials::S3 {
                    access_key_id: text(data, name, S3_ACCESS_KEY_ID)?
                        .ok_or_else(|| missing(name, S3_ACCESS_KEY_ID, "the S3 access key id"))?
                        .into(),
                    secret_access_key: text(data, name, S3_SECRET_ACCESS_KEY)?
                        .ok_or_else(|| {
                            missing(name, S3_SECRET_ACCESS_KEY, "the S3 secret access key")
                        })?
                        .into(),
                    session_token: text(data, name, S3_SESSION_TOKEN)?.map(Into::into),
                },
                Destination::Gcs { .. } => Credentials::GcsServiceAccount {
                    json: text(data, name, GCS_SERVICE_ACCOUNT_JSON)?
                        .ok_or_else(|| {
                            missing(name, GCS_SERVICE_ACCOUNT_JSON, "a service-account key")
                        })?
                        .into(),
                },
                Destination::Azure { account, .. } => {
                    if account.is_empty() {
                        *account = text(data, name, AZURE_ACCOUNT_NAME)?.ok_or_else(|| {
                            missing(
                                name,
                                AZURE_ACCOUNT_NAME,
                                "the storage account, as destination.azure.account is not set",
                            )
                        })?;
                    }
                    match (
                        text(data, name, AZURE_ACCOUNT_KEY)?,
                        text(data, name, AZURE_SAS_TOKEN)?,
                    ) {
                        (Some(key), _) => Credentials::AzureAccessKey { key: key.into() },
                        (None, Some(token)) => Credentials::AzureSas {
                            token: token.into(),
                        },
                        (None, None) => {
                            return Err(missing(
                                name,
                                AZURE_ACCOUNT_KEY,
                                "an account key, or a SAS token under sasToken",
                            ));
                        }
                    }
                }
                Destination::Local { .. } => Credentials::Ambient,
            }
        }
    };
    let key = match &target.key_secret {
        None => None,
        Some(name) => {
            let data = secret(name, format!("{}.encryption.keySecret", target.field))?;
            let raw = data
                .get(ENCRYPTION_KEY)
                .ok_or_else(|| missing(name, ENCRYPTION_KEY, "the 256-bit encryption key"))?;
            let bytes = key_bytes(raw).map_err(|why| bad(name, ENCRYPTION_KEY, why))?;
            Some(
                EncryptionKey::from_bytes(&bytes)
                    .map_err(|e| bad(name, ENCRYPTION_KEY, e.to_string()))?,
            )
        }
    };
    let allow_http = match &destination {
        Destination::S3 { endpoint, .. }
        | Destination::Gcs { endpoint, .. }
        | Destination::Azure { endpoint, .. } => endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://")),
        Destination::Local { .. } => false,
    };
    let config = StoreConfig::new(destination)
        .with_prefix(target.prefix.clone())
        .with_credentials(credentials)
        .with_allow_http(allow_http);
    Ok((config, key))
}

/// The 32 key bytes of a Secret value: 32 raw bytes, 64 hex characters or 44 of base64
/// (surrounding whitespace ignored for the text forms).
pub fn key_bytes(raw: &[u8]) -> Result<Vec<u8>, String> {
    use base64::Engine;
    if raw.len() == 32 {
        return Ok(raw.to_vec());
    }
    let text = std::str::from_utf8(raw)
        .map_err(|_| format!("{} bytes; a key is 32 bytes", raw.len()))?
        .trim();
    let shape = "a key is 32 bytes, 64 hexadecimal characters or 44 characters of base64";
    match text.len() {
        64 => (0..64)
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| format!("64 characters that are not hexadecimal; {shape}")),
        44 => base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| format!("44 characters that are not base64 of 32 bytes; {shape}")),
        n => Err(format!("{n} characters; {shape}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{BackupDestination, S3Destination};

    fn spec(destination: Option<BackupDestination>) -> BackupSpec {
        BackupSpec {
            every: "1h".into(),
            keep: 2,
            directory: None,
            destination,
            encryption: None,
            verify: None,
        }
    }

    fn s3() -> BackupDestination {
        BackupDestination {
            s3: Some(S3Destination {
                bucket: "b".into(),
                endpoint: Some("http://127.0.0.1:1".into()),
                ..S3Destination::default()
            }),
            credentials_secret: Some("creds".into()),
            ..BackupDestination::default()
        }
    }

    #[test]
    fn targets_per_runtime() {
        let allowed = Folders::Allowed {
            base: "/state".into(),
            default: "/state/ns/c/backups".into(),
        };
        let t = target(&spec(None), &allowed, "ns", "c").expect("default folder");
        assert_eq!(t, BackupTarget::folder("/state/ns/c/backups"));
        let mut with_dir = spec(None);
        with_dir.directory = Some("bk".into());
        assert_eq!(
            target(&with_dir, &allowed, "ns", "c"),
            Ok(BackupTarget::folder("/state/bk"))
        );
        assert_eq!(
            target(&with_dir, &Folders::Refused, "ns", "c"),
            Err(FOLDER_REFUSED)
        );
        assert_eq!(
            target(&spec(None), &Folders::Refused, "ns", "c"),
            Err(DESTINATION_REQUIRED)
        );
        let t = target(&spec(Some(s3())), &Folders::Refused, "ns", "c").expect("s3");
        assert_eq!(t.prefix, "ns/c");
        assert!(matches!(
            t.destination,
            Destination::S3 {
                path_style: true,
                ..
            }
        ));
        assert_eq!(t.secrets(), ["creds"]);
    }

    #[test]
    fn store_config_names_the_missing_secret_and_key() {
        let t = target(&spec(Some(s3())), &Folders::Refused, "ns", "c").expect("s3");
        let mut secrets = ReadSecrets::new();
        secrets.insert("creds".into(), None);
        let e = store_config(&t, "ns", &secrets).expect_err("missing");
        assert_eq!(
            e.to_string(),
            "Secret ns/creds (named by spec.backup.destination.credentialsSecret) does not exist"
        );
        let data = |pairs: &[(&str, &str)]| {
            Some(SecretData::new(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                    .collect(),
            ))
        };
        secrets.insert("creds".into(), data(&[("accessKeyId", "AK")]));
        let e = store_config(&t, "ns", &secrets).expect_err("key");
        assert!(e.to_string().contains("has no key secretAccessKey"), "{e}");
        secrets.insert(
            "creds".into(),
            data(&[("accessKeyId", "AK"), ("secretAccessKey", "TOPSECRET")]),
        );
        let (config, key) = store_config(&t, "ns", &secrets).expect("config");
        assert!(key.is_none());
        assert!(config.allow_http);
        assert!(!format!("{config:?} {secrets:?}").contains("TOPSECRET"));
    }

    #[test]
    fn key_forms() {
        assert_eq!(key_bytes(&[7; 32]).expect("raw"), vec![7; 32]);
        assert_eq!(
            key_bytes("ab".repeat(32).as_bytes()).expect("hex"),
            vec![0xab; 32]
        );
        let b64 = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n";
        assert_eq!(key_bytes(b64.as_bytes()).expect("base64"), vec![1; 32]);
        assert!(key_bytes(b"short").is_err());
        assert!(key_bytes("zz".repeat(32).as_bytes()).is_err());
    }
}
