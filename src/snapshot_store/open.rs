//! Building the `object_store` client for a [`StoreConfig`].

use std::sync::{Arc, Once};

use object_store::ClientOptions;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;

use super::{Credentials, Destination, StoreConfig, StoreError};

/// The HTTP client is rustls without a bundled provider (so no aws-lc-rs enters the static
/// build): install ring as the process default once, unless something installed one already.
fn ensure_tls_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn mismatch(kind: &str, creds: &Credentials) -> StoreError {
    let given = match creds {
        Credentials::Ambient => "ambient",
        Credentials::S3 { .. } => "S3 access keys",
        Credentials::GcsServiceAccount { .. } => "a GCS service account",
        Credentials::AzureAccessKey { .. } => "an Azure access key",
        Credentials::AzureSas { .. } => "an Azure SAS token",
    };
    StoreError::Config(format!(
        "{given} credentials cannot be used with a {kind} store"
    ))
}

fn nonempty(what: &str, v: &str) -> Result<(), StoreError> {
    if v.trim().is_empty() {
        return Err(StoreError::Config(format!("the {what} is empty")));
    }
    Ok(())
}

/// The store client for `config` (no request is made).
pub(super) fn build(config: &StoreConfig) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let creds = &config.credentials;
    let options = ClientOptions::new().with_allow_http(config.allow_http);
    let built: Result<Arc<dyn ObjectStore>, object_store::Error> = match &config.destination {
        Destination::Local { path } => {
            if !matches!(creds, Credentials::Ambient) {
                return Err(mismatch("local folder", creds));
            }
            std::fs::create_dir_all(path)
                .map_err(StoreError::io(format!("creating {}", path.display())))?;
            LocalFileSystem::new_with_prefix(path)
                .map(|fs| Arc::new(fs.with_fsync(true)) as Arc<dyn ObjectStore>)
        }
        Destination::S3 {
            bucket,
            region,
            endpoint,
            path_style,
        } => {
            nonempty("bucket", bucket)?;
            ensure_tls_provider();
            let mut b = match creds {
                Credentials::Ambient => AmazonS3Builder::from_env(),
                Credentials::S3 {
                    access_key_id,
                    secret_access_key,
                    session_token,
                } => {
                    let b = AmazonS3Builder::new()
                        .with_access_key_id(access_key_id.expose())
                        .with_secret_access_key(secret_access_key.expose());
                    match session_token {
                        Some(t) => b.with_token(t.expose()),
                        None => b,
                    }
                }
                other => return Err(mismatch("S3", other)),
            };
            b = b
                .with_bucket_name(bucket)
                .with_region(region.as_deref().unwrap_or("us-east-1"))
                .with_virtual_hosted_style_request(!path_style)
                .with_client_options(options);
            if let Some(e) = endpoint {
                b = b.with_endpoint(e);
            }
            b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        }
        Destination::Gcs { bucket, endpoint } => {
            nonempty("bucket", bucket)?;
            ensure_tls_provider();
            let mut b = match creds {
                Credentials::Ambient => GoogleCloudStorageBuilder::from_env(),
                Credentials::GcsServiceAccount { json } => {
                    GoogleCloudStorageBuilder::new().with_service_account_key(json.expose())
                }
                other => return Err(mismatch("GCS", other)),
            };
            b = b.with_bucket_name(bucket).with_client_options(options);
            if let Some(e) = endpoint {
                b = b.with_base_url(e);
            }
            b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        }
        Destination::Azure {
            account,
            container,
            endpoint,
        } => {
            nonempty("account", account)?;
            nonempty("container", container)?;
            ensure_tls_provider();
            let mut b = match creds {
                Credentials::Ambient => MicrosoftAzureBuilder::from_env(),
                Credentials::AzureAccessKey { key } => {
                    MicrosoftAzureBuilder::new().with_access_key(key.expose())
                }
                Credentials::AzureSas { token } => {
                    let pairs: Vec<(String, String)> =
                        form_pairs(token.expose().trim_start_matches('?'));
                    MicrosoftAzureBuilder::new().with_sas_authorization(pairs)
                }
                other => return Err(mismatch("Azure", other)),
            };
            b = b
                .with_account(account)
                .with_container_name(container)
                .with_client_options(options);
            if let Some(e) = endpoint {
                b = b.with_endpoint(e.clone());
            }
            b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        }
    };
    built.map_err(|e| {
        // Builder errors name the setting at fault; they never carry credential values.
        StoreError::Config(format!("{}: {e}", config.destination.url()))
    })
}

/// Splits a query string into its (percent-decoded) pairs.
fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hexval = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hexval(b[i + 1]), hexval(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sas_tokens_split_into_decoded_pairs() {
        let p = form_pairs("sv=2022-11-02&sig=a%2Fb%3D&se=2030-01-01T00%3A00Z");
        assert_eq!(p[1], ("sig".into(), "a/b=".into()));
        assert_eq!(p[2].1, "2030-01-01T00:00Z");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn credentials_must_fit_the_store() {
        let cfg = StoreConfig::new(Destination::Local {
            path: std::env::temp_dir().join("eo-store-mismatch"),
        })
        .with_credentials(Credentials::AzureAccessKey { key: "k".into() });
        let err = build(&cfg).expect_err("mismatch");
        assert!(err.to_string().contains("local folder"), "{err}");
        let s3 = StoreConfig::new(Destination::S3 {
            bucket: " ".into(),
            region: None,
            endpoint: None,
            path_style: false,
        });
        assert!(build(&s3).is_err());
    }
}
