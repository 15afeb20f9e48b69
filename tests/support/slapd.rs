//! A throwaway OpenLDAP server for the `ldap` feature's tests: a `slapd.conf` with the
//! `mdb` backend in a temporary directory, slapd on a free loopback port, the base tree
//! `dc=example,dc=com` with `ou=people` and `ou=groups`, stopped (and its directory
//! removed) on drop. `ATTRFLOW_LDAP_URL` points at an existing server instead (bound as
//! `cn=admin,dc=example,dc=com` / `secret`, holding the same base tree). Without slapd
//! the tests are skipped, except under `CI=true`, where that is a failure.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness: each test file uses part of it, and it fails loudly"
)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ldap3::LdapConn;

pub const BASE: &str = "dc=example,dc=com";
pub const PEOPLE: &str = "ou=people,dc=example,dc=com";
pub const GROUPS: &str = "ou=groups,dc=example,dc=com";
pub const ADMIN: &str = "cn=admin,dc=example,dc=com";
pub const PASSWORD: &str = "secret";

/// A running server.
pub struct Slapd {
    pub url: String,
    /// The same server over TLS (`ldaps://`), with a self-signed certificate, when
    /// `openssl` is there to make one.
    pub ldaps_url: Option<String>,
    child: Option<Child>,
    dir: Option<PathBuf>,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into(), "/usr/libexec".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(38_389)
}

fn schema_dir() -> Option<PathBuf> {
    [
        "/etc/ldap/schema",
        "/etc/openldap/schema",
        "/usr/local/etc/openldap/schema",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|d| d.join("core.schema").is_file())
}

fn module_dir() -> Option<PathBuf> {
    [
        "/usr/lib/ldap",
        "/usr/lib64/openldap",
        "/usr/lib/openldap",
        "/usr/local/libexec/openldap",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|d| d.join("back_mdb.so").is_file() || d.join("back_mdb.la").is_file())
}

/// Starts a server, or returns `None` (after saying why) when slapd is not installed
/// and this is not CI.
pub fn start() -> Option<Slapd> {
    if let Ok(url) = std::env::var("ATTRFLOW_LDAP_URL") {
        return Some(Slapd {
            url,
            ldaps_url: std::env::var("ATTRFLOW_LDAPS_URL").ok(),
            child: None,
            dir: None,
        });
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let (Some(slapd), Some(schema)) = (find("slapd"), schema_dir()) else {
        assert!(
            !ci,
            "CI=true but slapd is not installed (apt-get install slapd ldap-utils)"
        );
        eprintln!("skipped: slapd is not installed (set ATTRFLOW_LDAP_URL or install slapd)");
        return None;
    };
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "attrflow-slapd-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("db")).expect("temporary directory");
    let modules = module_dir()
        .map(|m| format!("modulepath {}\nmoduleload back_mdb\n", m.display()))
        .unwrap_or_default();
    // A self-signed certificate for StartTLS and ldaps://.
    let tls = find("openssl").is_some_and(|openssl| {
        Command::new(openssl)
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
            ])
            .arg("-keyout")
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(tls || !ci, "CI=true but openssl could not make a test certificate");
    let tls_lines = if tls {
        format!(
            "TLSCertificateFile {d}/cert.pem\nTLSCertificateKeyFile {d}/key.pem\n",
            d = dir.display()
        )
    } else {
        String::new()
    };
    let conf = format!(
        "include {s}/core.schema\ninclude {s}/cosine.schema\ninclude {s}/inetorgperson.schema\ninclude {s}/nis.schema\n\
         {modules}pidfile {d}/slapd.pid\n{tls_lines}\
         referral ldap://referral.invalid/\n\
         sizelimit size.soft=1000 size.hard=1000 size.pr=unlimited size.prtotal=unlimited\n\
         database mdb\nmaxsize 1073741824\ndbnosync\nsuffix \"{BASE}\"\nrootdn \"{ADMIN}\"\nrootpw {PASSWORD}\n\
         directory {d}/db\nindex objectClass eq\nindex uid eq\n",
        s = schema.display(),
        d = dir.display(),
    );
    std::fs::write(dir.join("slapd.conf"), conf).expect("slapd.conf");
    // A port another test takes between our probe and slapd's bind: try again.
    for _ in 0..5 {
        let port = free_port();
        let url = format!("ldap://127.0.0.1:{port}");
        let ldaps_url = tls.then(|| format!("ldaps://127.0.0.1:{}", free_port()));
        let listen = match &ldaps_url {
            Some(ldaps) => format!("{url}/ {ldaps}/"),
            None => format!("{url}/"),
        };
        let log = std::fs::File::create(dir.join("slapd.log")).expect("log file");
        let child = Command::new(&slapd)
            .arg("-f")
            .arg(dir.join("slapd.conf"))
            .arg("-h")
            .arg(listen)
            .args(["-d", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("slapd starts");
        let mut server = Slapd {
            url,
            ldaps_url,
            child: Some(child),
            dir: Some(dir.clone()),
        };
        if wait_ready(&mut server) {
            load_base(&server.url);
            return Some(server);
        }
        if let Some(child) = &mut server.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        server.dir = None;
    }
    let log = std::fs::read_to_string(dir.join("slapd.log")).unwrap_or_default();
    panic!("slapd did not start: {log}");
}

fn wait_ready(server: &mut Slapd) -> bool {
    // Up to 15 s.
    for _ in 0..300 {
        if let Some(child) = &mut server.child {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
        }
        if let Ok(mut conn) = LdapConn::new(&server.url) {
            if conn.simple_bind(ADMIN, PASSWORD).is_ok_and(|r| r.rc == 0) {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// An admin connection.
pub fn admin(url: &str) -> LdapConn {
    let mut conn = LdapConn::new(url).expect("connect");
    let bound = conn.simple_bind(ADMIN, PASSWORD).expect("bind");
    assert_eq!(bound.rc, 0, "admin bind: {bound:?}");
    conn
}

fn load_base(url: &str) {
    let mut conn = admin(url);
    let set = |v: &[&str]| {
        v.iter()
            .map(|s| s.to_string())
            .collect::<std::collections::HashSet<String>>()
    };
    type Attributes = Vec<(String, std::collections::HashSet<String>)>;
    let entries: Vec<(&str, Attributes)> = vec![
        (
            BASE,
            vec![
                ("objectClass".into(), set(&["dcObject", "organization"])),
                ("o".into(), set(&["Example"])),
                ("dc".into(), set(&["example"])),
            ],
        ),
        (
            PEOPLE,
            vec![
                ("objectClass".into(), set(&["organizationalUnit"])),
                ("ou".into(), set(&["people"])),
            ],
        ),
        (
            GROUPS,
            vec![
                ("objectClass".into(), set(&["organizationalUnit"])),
                ("ou".into(), set(&["groups"])),
            ],
        ),
    ];
    for (dn, attrs) in entries {
        let r = conn.add(dn, attrs).expect("add");
        // An existing server (ATTRFLOW_LDAP_URL) may hold them already.
        assert!(r.rc == 0 || r.rc == 68, "add {dn}: {r:?}");
    }
}

/// Runs an ldap-utils command against the server as the admin.
pub fn ldap_tool(url: &str, tool: &str, args: &[&str], input: Option<&str>) -> String {
    use std::io::Write;
    let program = find(tool).unwrap_or_else(|| PathBuf::from(tool));
    let mut child = Command::new(program)
        .args(["-x", "-H", url, "-D", ADMIN, "-w", PASSWORD])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool} (ldap-utils) runs: {e}"));
    // Written from a thread: the tool's output fills its pipe while it still reads.
    let writer = child.stdin.take().map(|mut stdin| {
        let input = input.unwrap_or_default().to_owned();
        std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        })
    });
    let out = child.wait_with_output().expect("tool output");
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The LDIF `ldapsearch -LLL` prints, as (dn, attribute, value) triples in order (long
/// lines unfolded).
pub fn ldif(text: &str) -> Vec<(String, String, String)> {
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        match line.strip_prefix(' ') {
            Some(rest) => {
                if let Some(last) = lines.last_mut() {
                    last.push_str(rest);
                }
            }
            None => lines.push(line.to_owned()),
        }
    }
    let mut out = Vec::new();
    let mut dn = String::new();
    for line in lines {
        let Some((name, value)) = line.split_once(": ") else {
            continue;
        };
        if name == "dn" {
            dn = value.to_owned();
        } else {
            out.push((dn.clone(), name.to_owned(), value.to_owned()));
        }
    }
    out
}
