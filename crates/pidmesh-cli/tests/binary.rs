//! The `pidmesh` binary as a process: exit code 2 and the field named for bad configuration,
//! certificate files, start-up, health, and a graceful stop on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pidmesh");

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pidmesh-bin-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET: (status, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Some((status, body))
}

fn run_config(dir: &Path, text: &str) -> std::process::Output {
    let p = dir.join("node.toml");
    std::fs::write(&p, text).unwrap();
    Command::new(BIN)
        .args(["run", "--config"])
        .arg(&p)
        .env_remove("PIDMESH_TRANSPORT")
        .output()
        .unwrap()
}

#[test]
fn bad_config_exits_2_naming_the_field() {
    let dir = tempdir("badcfg");
    let cases = [
        (
            "listen = \"127.0.0.1:1\"\ntransport = \"carrier-pigeon\"\n",
            "`transport`",
        ),
        ("listen = \"127.0.0.1:1\"\ntransport = \"tcp\"\n", "`name`"),
        ("name = \"a\"\nlisten = \"127.0.0.1:1\"\n", "`tls_ca`"),
        (
            "name = \"a\"\nlisten = \"127.0.0.1:1\"\ntransport = \"tcp\"\nadmin_listen = \"0.0.0.0:7947\"\n",
            "`admin_token`",
        ),
        ("nmae = \"a\"\n", "nmae"),
    ];
    for (text, field) in cases {
        let out = run_config(&dir, text);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(field), "{text}: {err}");
        assert!(err.contains("node.toml"), "{text}: {err}");
    }
    // An environment variable beats the file, and is named as the source.
    let p = dir.join("ok.toml");
    std::fs::write(
        &p,
        "name = \"a\"\nlisten = \"127.0.0.1:1\"\ntransport = \"tcp\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&p)
        .env("PIDMESH_PRESET", "turbo")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("PIDMESH_PRESET"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn certificates_start_health_and_sigterm() {
    let dir = tempdir("run");
    let st = Command::new(BIN)
        .args(["cert", "ca", "--out"])
        .arg(dir.join("ca"))
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new(BIN)
        .args(["cert", "node", "n1", "--ca"])
        .arg(dir.join("ca"))
        .arg("--out")
        .arg(dir.join("certs"))
        .status()
        .unwrap();
    assert!(st.success());
    // Refuses to overwrite.
    let out = Command::new(BIN)
        .args(["cert", "ca", "--out"])
        .arg(dir.join("ca"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));

    let (cluster, admin) = (free_port(), free_port());
    let child = Command::new(BIN)
        .args(["run", "--preset", "local", "--log", "warn"])
        .args(["--listen", &format!("127.0.0.1:{cluster}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .arg("--tls-ca")
        .arg(dir.join("ca/ca.pem"))
        .arg("--tls-cert")
        .arg(dir.join("certs/n1.pem"))
        .arg("--tls-key")
        .arg(dir.join("certs/n1.key"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut node = Node(child);
    let t0 = Instant::now();
    loop {
        if let Some((200, _)) = get(admin, "/healthz") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the admin API never answered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("start-up to /healthz: {:?}", t0.elapsed());
    let (status, body) = get(admin, "/v1/members").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"name\":\"n1\""), "{body}");
    let (status, body) = get(admin, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("# HELP pidmesh_"), "{body}");
    // The inspection command against it.
    let out = Command::new(BIN)
        .args([
            "members",
            "--json",
            "--admin",
            &format!("127.0.0.1:{admin}"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"n1\""));
    signal(&node.0, "-TERM");
    assert_eq!(wait_exit(&mut node.0, Duration::from_secs(20)), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
