//! The error type of the snapshot-store layer.

/// What went wrong in a snapshot store. Messages name the store and object, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The configuration cannot describe a store (missing bucket, bad URL, bad key length...).
    #[error("invalid snapshot store configuration: {0}")]
    Config(String),
    /// The store client failed (network, authentication, missing bucket, server error).
    #[error("{context}: {source}")]
    Store {
        /// What was being done, e.g. `uploading s3://b/x.db`.
        context: String,
        /// The store client's error.
        #[source]
        source: object_store::Error,
    },
    /// A local file or stream failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The object does not exist.
    #[error("no snapshot object {0}")]
    NotFound(String),
    /// The snapshot bytes are not a complete etcd snapshot: missing or wrong SHA-256 trailer.
    #[error("snapshot integrity check failed: {0}")]
    Integrity(String),
    /// The object is encrypted and no key was given to read it.
    #[error("the snapshot is encrypted with key {key_id} and no encryption key was given")]
    KeyMissing {
        /// The key id recorded in the object.
        key_id: String,
    },
    /// The object is encrypted with another key than the one given.
    #[error(
        "wrong encryption key: the snapshot was encrypted with key {recorded}, the key given is {given}"
    )]
    WrongKey {
        /// The key id recorded in the object.
        recorded: String,
        /// The id of the key given.
        given: String,
    },
    /// The encrypted object failed authentication or ended early: it was changed or truncated.
    #[error("encrypted snapshot is corrupt: {0}")]
    Corrupt(String),
    /// An upload was used after it was committed or aborted.
    #[error("the upload of {0} is already finished")]
    Finished(String),
}

impl StoreError {
    pub(crate) fn store(context: impl Into<String>) -> impl FnOnce(object_store::Error) -> Self {
        let context = context.into();
        move |source| match source {
            object_store::Error::NotFound { .. } => StoreError::NotFound(context),
            source => StoreError::Store { context, source },
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| StoreError::Io { context, source }
    }
}
