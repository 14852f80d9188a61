//! Manifests: `EtcdCluster` resources read from a YAML file (several documents allowed) or from
//! every `.yaml`/`.yml` file of a folder, checked field by field before anything acts on them.
//!
//! `kind: Secret` documents (`v1`, `data` in base64 and/or `stringData`) in the same files are
//! the local runtime's Secrets: what `spec.backup` names for credentials and encryption keys.
//! Their values are never logged.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use serde_json::Value;

use crate::controller::backup::SecretData;

use crate::api::validation::validate_cluster;
use crate::api::{EtcdCluster, GROUP, VERSION};

/// The namespace of a manifest that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A cluster read from a manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file it came from.
    pub file: PathBuf,
    /// Its namespace ([`DEFAULT_NAMESPACE`] when not given).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The resource.
    pub cluster: EtcdCluster,
    /// Every Secret of the manifests (the cluster reads those of its namespace).
    pub secrets: Arc<LocalSecrets>,
}

/// The Secrets of the manifests, by namespace and name. `Debug` shows no value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalSecrets(BTreeMap<(String, String), SecretData>);

impl LocalSecrets {
    /// The Secret `namespace/name`, if a manifest defines it.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&SecretData> {
        self.0.get(&(namespace.to_owned(), name.to_owned()))
    }
}

impl Manifest {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Why a manifest was refused: the file, the document, the field and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The file.
    pub file: PathBuf,
    /// The document's position in the file (1-based), when known.
    pub document: Option<usize>,
    /// The field path, when one is at fault.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(d) = self.document {
            write!(f, " (document {d})")?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ManifestError {}

/// Every problem found in the manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid manifest")?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestErrors {}

/// The manifest files under `path`: the file itself, or the folder's `.yaml`/`.yml` files in
/// name order.
pub fn manifest_files(path: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let fail = |message: String| ManifestError {
        file: path.to_path_buf(),
        document: None,
        field: None,
        message,
    };
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        return Err(fail("no such file or folder".to_owned()));
    }
    let entries = std::fs::read_dir(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| e == "yaml" || e == "yml")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// What one file holds.
#[derive(Debug, Default)]
struct Parsed {
    clusters: Vec<Manifest>,
    secrets: Vec<(String, String, SecretData)>,
}

/// Reads and checks one file's text: its clusters (with the file's own Secrets attached).
pub fn parse_file(file: &Path, text: &str) -> Result<Vec<Manifest>, ManifestErrors> {
    let parsed = parse_documents(file, text)?;
    let mut secrets = LocalSecrets::default();
    for (ns, name, data) in parsed.secrets {
        secrets.0.insert((ns, name), data);
    }
    let secrets = Arc::new(secrets);
    Ok(parsed
        .clusters
        .into_iter()
        .map(|m| Manifest {
            secrets: secrets.clone(),
            ..m
        })
        .collect())
}

fn parse_documents(file: &Path, text: &str) -> Result<Parsed, ManifestErrors> {
    let at = |document: Option<usize>, field: Option<&str>, message: String| ManifestError {
        file: file.to_path_buf(),
        document,
        field: field.map(str::to_owned),
        message,
    };
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| ManifestErrors(vec![at(None, None, format!("not valid YAML: {e}"))]))?;
    let mut out = Parsed::default();
    let mut errors = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let n = Some(i + 1);
        if doc.is_null() {
            continue;
        }
        if doc.get("kind").and_then(Value::as_str) == Some("Secret") {
            match parse_secret(&doc) {
                Ok(secret) => out.secrets.push(secret),
                Err((field, message)) => errors.push(at(n, field.as_deref(), message)),
            }
            continue;
        }
        match parse_document(doc) {
            Ok(cluster) => {
                let problems = validate_cluster(&cluster);
                if !problems.is_empty() {
                    errors.extend(
                        problems
                            .into_iter()
                            .map(|p| at(n, Some(&p.path), p.message)),
                    );
                    continue;
                }
                let namespace = cluster
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
                let name = cluster.metadata.name.clone().unwrap_or_default();
                out.clusters.push(Manifest {
                    file: file.to_path_buf(),
                    namespace,
                    name,
                    cluster,
                    secrets: Arc::default(),
                });
            }
            Err((field, message)) => errors.push(at(n, field.as_deref(), message)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ManifestErrors(errors))
    }
}

/// A `v1` Secret document: (namespace, name, data), `stringData` over `data` as the apiserver
/// merges them. Errors name the key, never a value.
fn parse_secret(doc: &Value) -> Result<(String, String, SecretData), DocError> {
    use base64::Engine;
    match doc.get("apiVersion").and_then(Value::as_str) {
        Some("v1") => {}
        other => {
            return Err((
                Some("apiVersion".to_owned()),
                format!("a Secret has apiVersion v1, not {other:?}"),
            ));
        }
    }
    let meta = doc.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| (Some("metadata.name".to_owned()), "is required".to_owned()))?;
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_NAMESPACE);
    let mut data = BTreeMap::new();
    let map = |field: &str| -> Result<Vec<(String, String)>, DocError> {
        match doc.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err((Some(format!("{field}.{k}")), "must be a string".to_owned())),
                })
                .collect(),
            Some(_) => Err((
                Some(field.to_owned()),
                "must be a mapping of keys to strings".to_owned(),
            )),
        }
    };
    for (k, v) in map("data")? {
        let clean: String = v.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(clean)
            .map_err(|_| {
                (
                    Some(format!("data.{k}")),
                    "is not base64 (use stringData for plain text)".to_owned(),
                )
            })?;
        data.insert(k, bytes);
    }
    for (k, v) in map("stringData")? {
        data.insert(k, v.into_bytes());
    }
    Ok((namespace.to_owned(), name.to_owned(), SecretData::new(data)))
}

/// Reads every manifest under `path`; refuses duplicates of one `namespace/name`.
pub fn load(path: &Path) -> Result<Vec<Manifest>, ManifestErrors> {
    let files = manifest_files(path).map_err(|e| ManifestErrors(vec![e]))?;
    let mut out: Vec<Manifest> = Vec::new();
    let mut secrets = LocalSecrets::default();
    let mut errors = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(ManifestError {
                    file: file.clone(),
                    document: None,
                    field: None,
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        match parse_documents(&file, &text) {
            Ok(parsed) => {
                out.extend(parsed.clusters);
                for (ns, name, data) in parsed.secrets {
                    if secrets.0.insert((ns.clone(), name.clone()), data).is_some() {
                        errors.push(ManifestError {
                            file: file.clone(),
                            document: None,
                            field: Some("metadata.name".to_owned()),
                            message: format!("Secret {ns}/{name} is defined twice"),
                        });
                    }
                }
            }
            Err(ManifestErrors(es)) => errors.extend(es),
        }
    }
    let secrets = Arc::new(secrets);
    for m in &mut out {
        m.secrets = secrets.clone();
    }
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for m in &out {
        if let Some(first) = seen.insert(m.key(), m.file.clone()) {
            errors.push(ManifestError {
                file: m.file.clone(),
                document: None,
                field: Some("metadata.name".to_owned()),
                message: format!(
                    "cluster {} is defined twice (also in {})",
                    m.key(),
                    first.display()
                ),
            });
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ManifestErrors(errors))
    }
}

type DocError = (Option<String>, String);

/// One document: kind and apiVersion checked, unknown fields refused, then typed.
fn parse_document(mut doc: Value) -> Result<EtcdCluster, DocError> {
    // A manifest without a spec asks for the defaults.
    if let Value::Object(map) = &mut doc {
        map.entry("spec")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
    let Value::Object(map) = &doc else {
        return Err((
            None,
            "a document must be a mapping (an EtcdCluster)".to_owned(),
        ));
    };
    let expected_api = format!("{GROUP}/{VERSION}");
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v == expected_api => {}
        Some(v) => {
            return Err((
                Some("apiVersion".to_owned()),
                format!("{v:?} is not served here; use {expected_api}"),
            ));
        }
        None => {
            return Err((
                Some("apiVersion".to_owned()),
                format!("is required ({expected_api})"),
            ));
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        Some("EtcdCluster") => {}
        Some(k) => {
            return Err((
                Some("kind".to_owned()),
                format!("{k:?} is not supported; use EtcdCluster (or Secret, apiVersion v1)"),
            ));
        }
        None => {
            return Err((
                Some("kind".to_owned()),
                "is required (EtcdCluster)".to_owned(),
            ));
        }
    }
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str);
    if name.is_none_or(str::is_empty) {
        return Err((Some("metadata.name".to_owned()), "is required".to_owned()));
    }
    if let Some(spec) = map.get("spec") {
        check_known_fields(spec)?;
    }
    let map = map.clone();
    serde_json::from_value::<EtcdCluster>(doc).map_err(|e| type_error(&map, &e.to_string()))
}

/// Refuses fields the spec does not have (a misspelt `replica:` would otherwise be ignored),
/// using the spec's JSON schema so that new fields are known without a list here.
fn check_known_fields(spec: &Value) -> Result<(), DocError> {
    let schema = serde_json::to_value(schemars::schema_for!(crate::api::EtcdClusterSpec))
        .map_err(|e| (None, format!("cannot read the spec schema: {e}")))?;
    check_object(spec, &schema, &schema, "spec")
}

fn resolve<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    let mut s = schema;
    for _ in 0..8 {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let target = r
                .strip_prefix("#/")
                .map(|p| p.split('/').try_fold(root, |v, k| v.get(k)));
            match target.flatten() {
                Some(t) => s = t,
                None => return s,
            }
        } else if let Some(inner) = s
            .get("allOf")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 1)
            .and_then(|a| a.first())
        {
            s = inner;
        } else {
            return s;
        }
    }
    s
}

fn check_object(value: &Value, schema: &Value, root: &Value, path: &str) -> Result<(), DocError> {
    let schema = resolve(schema, root);
    let (Value::Object(map), Some(props)) =
        (value, schema.get("properties").and_then(Value::as_object))
    else {
        return Ok(());
    };
    for (key, v) in map {
        let Some(prop) = props.get(key) else {
            let known: Vec<&str> = props.keys().map(String::as_str).collect();
            return Err((
                Some(format!("{path}.{key}")),
                format!("unknown field; known fields are {}", known.join(", ")),
            ));
        };
        check_object(v, prop, root, &format!("{path}.{key}"))?;
    }
    Ok(())
}

/// Names the field a typing error is about (serde_json's message names the field for missing or
/// unknown fields; for a wrong type, the spec field whose value has the wrong shape is found).
fn type_error(map: &serde_json::Map<String, Value>, message: &str) -> DocError {
    let field = map.get("spec").and_then(|spec| {
        let fields = ["replicas", "version", "paused", "image"];
        for f in fields {
            if let Some(v) = spec.get(f) {
                let ok = match f {
                    "replicas" => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                    "paused" => v.is_boolean(),
                    _ => v.is_string(),
                };
                if !ok {
                    return Some(format!("spec.{f}"));
                }
            }
        }
        let etcd = spec.get("etcd")?;
        for (k, v) in etcd.as_object()? {
            let ok = match k.as_str() {
                "extraFlags" => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
                "autoCompactionMode" | "autoCompactionRetention" => v.is_string(),
                _ => v.is_i64() || v.is_null(),
            };
            if !ok {
                return Some(format!("spec.etcd.{k}"));
            }
        }
        None
    });
    (
        field,
        format!("does not match the EtcdCluster schema: {message}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_documents_and_default_namespace() {
        let text = "apiVersion: etcd.operator.dev/v1alpha1\nkind: EtcdCluster\nmetadata:\n  name: a\nspec:\n  replicas: 1\n---\napiVersion: etcd.operator.dev/v1alpha1\nkind: EtcdCluster\nmetadata:\n  name: b\n  namespace: team\n";
        let ms = parse_file(Path::new("x.yaml"), text).expect("valid");
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[0].key(), "default/a");
        assert_eq!(ms[0].cluster.spec.replicas, 1);
        assert_eq!(ms[1].key(), "team/b");
        assert_eq!(ms[1].cluster.spec.replicas, 3);
    }

    #[test]
    fn secrets_are_read_and_never_shown() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\ndata:\n  accessKeyId: QUtJRA==\nstringData:\n  secretAccessKey: TOPSECRET\n---\napiVersion: etcd.operator.dev/v1alpha1\nkind: EtcdCluster\nmetadata:\n  name: a\n";
        let ms = parse_file(Path::new("x.yaml"), text).expect("valid");
        assert_eq!(ms.len(), 1);
        let s = ms[0].secrets.get("default", "creds").expect("the Secret");
        assert_eq!(s.get("accessKeyId"), Some(&b"AKID"[..]));
        assert_eq!(s.get("secretAccessKey"), Some(&b"TOPSECRET"[..]));
        assert!(!format!("{ms:?}").contains("TOPSECRET"));
        let bad = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\ndata:\n  k: '!!'\n";
        let errs = parse_file(Path::new("x.yaml"), bad).expect_err("invalid");
        assert_eq!(errs.0[0].field.as_deref(), Some("data.k"));
    }

    #[test]
    fn misspelt_field_is_named() {
        let text = "apiVersion: etcd.operator.dev/v1alpha1\nkind: EtcdCluster\nmetadata:\n  name: a\nspec:\n  etcd:\n    heartbeat: 10\n";
        let errs = parse_file(Path::new("x.yaml"), text).expect_err("invalid");
        assert_eq!(errs.0[0].field.as_deref(), Some("spec.etcd.heartbeat"));
    }
}
