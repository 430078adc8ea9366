//! The inspection commands: `members`, `ls`, `get`, `group`, `watch`, `stats` against a node's
//! admin API. Human tables by default, the API's JSON with `--json`.

use std::fmt::Write as _;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

use crate::api::{EntryJson, ErrorJson, EventJson, MemberJson, StatsJson};

/// Why an inspection command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    #[error("bad admin address {0:?}")]
    BadUrl(String),
    #[error("cannot reach the admin API at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{status} from {url}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("reading the answer from {url}: {message}")]
    Body { url: String, message: String },
}

/// Where and how to reach the admin API.
pub(crate) struct Target {
    pub(crate) base: String,
    pub(crate) token: Option<String>,
}

/// Percent-encodes one path segment (names may contain `/` and anything else).
pub(crate) fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

impl Target {
    fn request(&self, path: &str) -> Result<(String, Request<Empty<Bytes>>), ClientError> {
        let base = if self.base.contains("://") {
            self.base.clone()
        } else {
            format!("http://{}", self.base)
        };
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let mut b = Request::get(&url);
        if let Some(t) = &self.token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let req = b
            .body(Empty::new())
            .map_err(|_| ClientError::BadUrl(self.base.clone()))?;
        Ok((url, req))
    }

    async fn send(
        &self,
        path: &str,
    ) -> Result<(String, hyper::Response<hyper::body::Incoming>), ClientError> {
        let (url, req) = self.request(path)?;
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let resp = client
            .request(req)
            .await
            .map_err(|e| ClientError::Connect {
                url: url.clone(),
                reason: error_chain(&e),
            })?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let message = serde_json::from_slice::<ErrorJson>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_owned());
            return Err(ClientError::Status {
                url,
                status,
                message,
            });
        }
        Ok((url, resp))
    }

    async fn get_raw(&self, path: &str) -> Result<(String, Bytes), ClientError> {
        let (url, resp) = self.send(path).await?;
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Body {
                url: url.clone(),
                message: e.to_string(),
            })?
            .to_bytes();
        Ok((url, body))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<(T, Bytes), ClientError> {
        let (url, body) = self.get_raw(path).await?;
        let v = serde_json::from_slice(&body).map_err(|e| ClientError::Body {
            url,
            message: e.to_string(),
        })?;
        Ok((v, body))
    }
}

/// An error and its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let _ = write!(s, ": {c}");
        cur = c.source();
    }
    s
}

/// Formats rows as an aligned table with a header.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut parts = Vec::new();
        for (i, c) in cells.enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            parts.push(format!("{c:<w$}"));
        }
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(&mut out, &mut header.iter().copied());
    for r in rows {
        line(&mut out, &mut r.iter().map(String::as_str));
    }
    out
}

fn entry_rows(v: &[EntryJson]) -> Vec<Vec<String>> {
    v.iter()
        .map(|e| {
            vec![
                e.kind.clone(),
                e.key.clone(),
                e.pid.display.clone(),
                e.meta.clone(),
            ]
        })
        .collect()
}

fn print_json(body: &[u8]) {
    println!("{}", String::from_utf8_lossy(body).trim_end());
}

/// The inspection commands.
pub(crate) enum Command {
    Members,
    Ls(String),
    Get(String),
    Group(String),
    Watch(String),
    Stats,
}

/// Runs one inspection command, printing to stdout.
pub(crate) async fn run(t: &Target, cmd: Command, json: bool) -> Result<(), ClientError> {
    match cmd {
        Command::Members => {
            let (v, raw): (Vec<MemberJson>, _) = t.get("/v1/members").await?;
            if json {
                print_json(&raw);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = v
                .iter()
                .map(|m| {
                    vec![
                        m.name.clone(),
                        m.addr.clone(),
                        m.incarnation.to_string(),
                        if m.local { "*".into() } else { String::new() },
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["NAME", "ADDRESS", "INCARNATION", "LOCAL"], &rows)
            );
        }
        Command::Ls(prefix) => {
            let (v, raw): (Vec<EntryJson>, _) =
                t.get(&format!("/v1/names?prefix={}", seg(&prefix))).await?;
            if json {
                print_json(&raw);
                return Ok(());
            }
            print!(
                "{}",
                table(&["KIND", "KEY", "PID", "META"], &entry_rows(&v))
            );
        }
        Command::Get(name) => {
            let (e, raw): (EntryJson, _) = t.get(&format!("/v1/names/{}", seg(&name))).await?;
            if json {
                print_json(&raw);
                return Ok(());
            }
            print!(
                "{}",
                table(&["KIND", "KEY", "PID", "META"], &entry_rows(&[e]))
            );
        }
        Command::Group(group) => {
            let (v, raw): (Vec<EntryJson>, _) =
                t.get(&format!("/v1/groups/{}", seg(&group))).await?;
            if json {
                print_json(&raw);
                return Ok(());
            }
            print!(
                "{}",
                table(&["KIND", "KEY", "PID", "META"], &entry_rows(&v))
            );
        }
        Command::Stats => {
            let (s, raw): (StatsJson, _) = t.get("/v1/stats").await?;
            if json {
                print_json(&raw);
                return Ok(());
            }
            let v = serde_json::to_value(&s).unwrap_or_default();
            let rows: Vec<Vec<String>> = v
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| vec![k.clone(), v.to_string().trim_matches('"').to_owned()])
                        .collect()
                })
                .unwrap_or_default();
            print!("{}", table(&["STAT", "VALUE"], &rows));
        }
        Command::Watch(prefix) => {
            let (url, resp) = t
                .send(&format!("/v1/events?prefix={}", seg(&prefix)))
                .await?;
            let mut body = resp.into_body();
            let mut buf = String::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| ClientError::Body {
                    url: url.clone(),
                    message: e.to_string(),
                })?;
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                buf.push_str(&String::from_utf8_lossy(data));
                while let Some(i) = buf.find("\n\n") {
                    let block: String = buf.drain(..i + 2).collect();
                    let data: String = block
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(str::trim_start)
                        .collect();
                    if data.is_empty() {
                        continue;
                    }
                    if json {
                        println!("{data}");
                    } else if let Ok(ev) = serde_json::from_str::<EventJson>(&data) {
                        println!("{}", describe_event(&ev));
                    }
                }
            }
        }
    }
    Ok(())
}

/// One line per event for `watch`.
pub(crate) fn describe_event(ev: &EventJson) -> String {
    let key = ev.key.clone().or(ev.node.clone()).unwrap_or_default();
    let mut s = format!("{:<18} {key}", ev.kind);
    if let Some(e) = &ev.entry {
        let _ = write!(s, " {}", e.pid.display);
    }
    if let Some(w) = &ev.winner {
        let _ = write!(s, " winner={}", w.pid.display);
    }
    if !ev.losers.is_empty() {
        let l: Vec<&str> = ev.losers.iter().map(|e| e.pid.display.as_str()).collect();
        let _ = write!(s, " losers={}", l.join(","));
    }
    if let Some(r) = &ev.reason {
        let _ = write!(s, " reason={r}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(seg("workers/eu"), "workers%2Feu");
        assert_eq!(seg("a b?"), "a%20b%3F");
        assert_eq!(seg("ok-1.x_~"), "ok-1.x_~");
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }
}
