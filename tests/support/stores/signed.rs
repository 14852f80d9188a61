//! Creating the bucket and the container the servers start with: one signed request each (the
//! store layer never creates buckets; an operator's destination must exist). Also a raw HTTP
//! helper for seeding the GCS emulator.

use std::net::TcpStream;
use std::time::Duration;

use super::{AZURE_ACCOUNT, AZURE_KEY, S3_ACCESS_KEY, S3_SECRET_KEY};
use crate::support::{HarnessError, Result};

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&k, data).as_ref().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Sends `PUT path` with `headers` and an empty body to 127.0.0.1:`port`: the status code and
/// the whole response.
fn http_put(port: u16, path: &str, headers: &[(String, String)]) -> Result<(u16, String)> {
    http_send(port, "PUT", path, headers, &[])
}

pub(super) fn http_send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| HarnessError::io(format!("connecting to 127.0.0.1:{port}"), e))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| HarnessError::io("setting a timeout", e))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .and_then(|()| s.write_all(body))
        .map_err(|e| HarnessError::io("sending a request", e))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .map_err(|e| HarnessError::io("reading a response", e))?;
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| HarnessError::msg(format!("bad HTTP response: {resp:?}")))?;
    Ok((code, resp))
}

fn utc_now() -> (String, String) {
    // (yyyymmdd'T'hhmmss'Z', RFC 1123) from the system clock, without a date crate.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let (h, m, s) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days.rem_euclid(7)) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(mo - 1) as usize];
    (
        format!("{y:04}{mo:02}{d:02}T{h:02}{m:02}{s:02}Z"),
        format!("{wd}, {d:02} {mon} {y:04} {h:02}:{m:02}:{s:02} GMT"),
    )
}

/// CreateBucket, signed with AWS Signature Version 4.
pub(super) fn s3_create_bucket(port: u16, bucket: &str) -> Result<()> {
    let (amz_date, _) = utc_now();
    let date = &amz_date[..8];
    let region = "us-east-1";
    let host = format!("127.0.0.1:{port}");
    let payload = sha256_hex(b"");
    let canonical = format!(
        "PUT\n/{bucket}\n\nhost:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n\nhost;x-amz-content-sha256;x-amz-date\n{payload}"
    );
    let scope = format!("{date}/{region}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let mut key = hmac(format!("AWS4{S3_SECRET_KEY}").as_bytes(), date.as_bytes());
    for part in [region, "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let sig: String = hmac(&key, to_sign.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={S3_ACCESS_KEY}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={sig}"
    );
    let (code, resp) = http_put(
        port,
        &format!("/{bucket}"),
        &[
            ("x-amz-date".into(), amz_date.clone()),
            ("x-amz-content-sha256".into(), payload),
            ("Authorization".into(), auth),
        ],
    )?;
    if code != 200 {
        return Err(HarnessError::msg(format!("CreateBucket {bucket}: {resp}")));
    }
    Ok(())
}

/// Create Container, signed with the account's Shared Key.
pub(super) fn azure_create_container(port: u16, container: &str) -> Result<()> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (_, date) = utc_now();
    let version = "2021-08-06";
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURE_ACCOUNT}/{AZURE_ACCOUNT}/{container}\nrestype:container"
    );
    let key = b64
        .decode(AZURE_KEY)
        .map_err(|e| HarnessError::msg(format!("bad account key: {e}")))?;
    let sig = b64.encode(hmac(&key, to_sign.as_bytes()));
    let (code, resp) = http_put(
        port,
        &format!("/{AZURE_ACCOUNT}/{container}?restype=container"),
        &[
            ("x-ms-date".into(), date),
            ("x-ms-version".into(), version.into()),
            (
                "Authorization".into(),
                format!("SharedKey {AZURE_ACCOUNT}:{sig}"),
            ),
        ],
    )?;
    if code != 201 {
        return Err(HarnessError::msg(format!(
            "Create Container {container}: {resp}"
        )));
    }
    Ok(())
}
