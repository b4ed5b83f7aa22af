//! Real programs in a real distribution image, a Debian bookworm made with
//! `debootstrap`: CPython's regression tests (Debian's `libpython3.11-testsuite`), run
//! in a hull container and compared, test by test, with the same run in a plain chroot
//! of the same tree on the host; Go's standard library tests (test binaries compiled in
//! the image), compared the same way; PostgreSQL initialising, taking writes, stopped with
//! `hull stop` and coming back with its data; a web server with `-p` and `-v`.
//!
//! `tests/lab/debian-image.sh` makes the image and the reference run; its directory
//! comes in `HULL_DEBIAN_IMAGE`. A lab test (`#[ignore]`d on the host), run by
//! `tests/lab/suite.sh` in an L1 of its own.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

mod common;

use common::e2e::*;

/// Tests that pass in the chroot and cannot in a VM, with the reason; the README
/// lists them. Empty: every test that passes on the host passes in hull.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

/// Each test's outcome in a `python3 -m test -v` run: `ok`, `FAIL`, `ERROR`,
/// `skipped ...`, `expected failure`, keyed by its id (`test_x (module.Class.test_x)`).
fn outcomes(output: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    // A test with a docstring prints its id alone, then the docstring's first line
    // with the outcome.
    let mut pending: Option<&str> = None;
    for line in output.lines() {
        let is_id = |s: &str| s.contains(" (test.") && s.ends_with(')') && !s.contains(" ... ");
        if is_id(line) {
            pending = Some(line);
            continue;
        }
        let Some((id, outcome)) = line.rsplit_once(" ... ") else {
            continue;
        };
        let id = match pending.take() {
            Some(p) if !id.contains(" (test.") => p,
            _ if id.contains(" (test.") => id,
            _ => continue,
        };
        let outcome = outcome.trim();
        let kind = ["ok", "FAIL", "ERROR", "expected failure", "unexpected success"]
            .into_iter()
            .find(|k| outcome == *k)
            .map(str::to_owned)
            .or_else(|| outcome.starts_with("skipped").then(|| outcome.to_owned()));
        if let Some(kind) = kind {
            found.insert(id.trim().to_owned(), kind);
        }
    }
    found
}

/// Each test's outcome in a run of the image's `/opt/go-tests/run`: `PASS`, `FAIL` or
/// `SKIP`, keyed by package and test (`os TestChdir`, `os TestRemoveAll/sub`), and each
/// package's test binary under `exit`: `ok` when it exited 0, else `exit N`.
fn go_outcomes(output: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut package = "";
    for line in output.lines() {
        if let Some(p) = line.strip_prefix("=== package ") {
            package = p.trim();
        } else if let Some(rest) = line.strip_prefix("=== exit ") {
            if let Some((p, status)) = rest.rsplit_once(' ') {
                let status = match status.trim() {
                    "0" => "ok".to_owned(),
                    n => format!("exit {n}"),
                };
                found.insert(format!("{p} exit"), status);
            }
        } else if let Some(rest) = line.trim_start().strip_prefix("--- ") {
            let Some((kind, rest)) = rest.split_once(": ") else {
                continue;
            };
            let Some(name) = rest.split_whitespace().next() else {
                continue;
            };
            if ["PASS", "FAIL", "SKIP"].contains(&kind) {
                let outcome = if kind == "PASS" { "ok" } else { kind };
                found.insert(format!("{package} {name}"), outcome.to_owned());
            }
        }
    }
    found
}

/// What hull's run printed for one regression (`PACKAGE TEST: OUTCOME`): the test's
/// own lines, or for a package's exit status the end of that package's output.
fn go_detail(output: &str, regression: &str) -> String {
    let key = regression.split(": ").next().unwrap_or_default();
    let (package, test) = key.split_once(' ').unwrap_or((key, ""));
    let block: Vec<&str> = output
        .lines()
        .skip_while(|l| *l != format!("=== package {package}"))
        .take_while(|l| !l.starts_with(&format!("=== exit {package} ")))
        .collect();
    let lines: Vec<&str> = if test == "exit" {
        block[block.len().saturating_sub(20)..].to_vec()
    } else {
        let top = test.split('/').next().unwrap_or(test);
        block
            .iter()
            .skip_while(|l| !l.ends_with(&format!("RUN   {top}")))
            .take_while(|l| !l.trim_start().starts_with(&format!("--- FAIL: {top} ")))
            .take(40)
            .copied()
            .collect()
    };
    format!("--- {regression}\n{}", lines.join("\n"))
}

/// Tests that passed in the reference and did not in hull (or did not run).
fn regressions(reference: &BTreeMap<String, String>, hull: &BTreeMap<String, String>) -> Vec<String> {
    reference
        .iter()
        .filter(|(_, outcome)| *outcome == "ok")
        .filter(|(id, _)| hull.get(*id).map(String::as_str) != Some("ok"))
        .filter(|(id, _)| !KNOWN_DIFFERENCES.iter().any(|(known, _)| id.contains(known)))
        .map(|(id, _)| format!("{id}: {}", hull.get(id).map_or("did not run", String::as_str)))
        .collect()
}

#[test]
#[ignore = "needs a KVM that boots Linux: runs in the lab (tests/lab/suite.sh)"]
fn cpython_regression_tests_pass_in_hull_as_in_a_chroot() {
    let _ = LAB;
    let dir = image_dir();
    let modules = std::fs::read_to_string(dir.join("modules.txt")).unwrap();
    let reference = outcomes(&std::fs::read_to_string(dir.join("reference.txt")).unwrap());
    assert!(
        reference.values().filter(|o| *o == "ok").count() > 500,
        "the reference ran too little"
    );

    let mut args = vec!["run", "--rm", debian(), "python3", "-m", "test", "-v"];
    args.extend(modules.split_whitespace());
    let out = hull(&args);
    let output = format!("{}{}", text(&out.stdout), text(&out.stderr));
    let ran = outcomes(&output);
    let regressed = regressions(&reference, &ran);
    let summary = output
        .lines()
        .skip_while(|l| !l.starts_with("== Tests result"))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!(
        "CPython {}: {} tests in the chroot ({} ok), {} in hull ({} ok); {} regressed",
        modules.trim(),
        reference.len(),
        reference.values().filter(|o| *o == "ok").count(),
        ran.len(),
        ran.values().filter(|o| *o == "ok").count(),
        regressed.len()
    );
    assert!(
        regressed.is_empty(),
        "passed in the chroot, not in hull:\n{}\n{summary}",
        regressed.join("\n")
    );
}

#[test]
#[ignore = "needs a KVM that boots Linux: runs in the lab (tests/lab/suite.sh)"]
fn go_standard_library_tests_pass_in_hull_as_in_a_chroot() {
    let _ = LAB;
    let dir = image_dir();
    let packages = std::fs::read_to_string(dir.join("go-packages.txt")).unwrap();
    let reference = go_outcomes(&std::fs::read_to_string(dir.join("go-reference.txt")).unwrap());
    assert!(
        reference.values().filter(|o| *o == "ok").count() > 500,
        "the Go reference ran too little"
    );

    // With Docker's default network, as in the chroot: syscall's TestUnshare expects
    // a new network namespace to have fewer interfaces than the container's own.
    let out = hull(&["run", "--rm", "--network", "bridge", debian(), "/opt/go-tests/run"]);
    let output = format!("{}{}", text(&out.stdout), text(&out.stderr));
    // A package whose binary exits 0 in the chroot must exit 0 in hull too.
    let ran = go_outcomes(&output);
    let regressed = regressions(&reference, &ran);
    eprintln!(
        "Go {}: {} tests in the chroot ({} passed), {} in hull ({} passed); {} regressed",
        packages.trim(),
        reference.len(),
        reference.values().filter(|o| *o == "ok").count(),
        ran.len(),
        ran.values().filter(|o| *o == "ok").count(),
        regressed.len()
    );
    // A package can fail by a test that the chroot skipped: show hull's failures too.
    let failed = ran
        .iter()
        .filter(|(id, o)| *o == "FAIL" && reference.get(*id).is_none_or(|r| r != "FAIL"))
        .map(|(id, o)| format!("{id}: {o}"));
    let mut details: Vec<String> = regressed
        .iter()
        .cloned()
        .chain(failed)
        .take(20)
        .map(|r| go_detail(&output, &r))
        .collect();
    if ran.is_empty() {
        details.push(format!("hull run printed:\n{output}"));
    }
    assert!(
        regressed.is_empty(),
        "passed in the chroot, not in hull:\n{}\n{}",
        regressed.join("\n"),
        details.join("\n")
    );
}

/// The image, imported once per test binary.
fn debian() -> &'static str {
    static IMPORTED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    IMPORTED.get_or_init(|| {
        let dir = image_dir();
        ok(&["import", dir.join("image.tar").to_str().unwrap(), "debian:distro"]);
    });
    "debian:distro"
}

fn image_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("HULL_DEBIAN_IMAGE").expect("tests/lab/suite.sh sets HULL_DEBIAN_IMAGE"))
}

/// PostgreSQL's data directory and the server, started as the `postgres` user: the
/// cluster is made on the first start only.
const POSTGRES: &str = "D=/var/lib/postgresql/data; B=/usr/lib/postgresql/15/bin; \
    [ -f $D/PG_VERSION ] || $B/initdb -D $D -A trust >/dev/null; \
    exec $B/postgres -D $D -c listen_addresses='' -k /tmp";

fn psql(sql: &str) -> String {
    ok(&[
        "exec",
        "-u",
        "postgres",
        "distro-pg",
        "psql",
        "-h",
        "/tmp",
        "-tA",
        "-c",
        sql,
    ])
    .trim()
    .to_owned()
}

fn wait_for_postgres() {
    wait_until("postgres accepts connections", Duration::from_secs(600), || {
        code(&hull(&[
            "exec",
            "-u",
            "postgres",
            "distro-pg",
            "/usr/lib/postgresql/15/bin/pg_isready",
            "-h",
            "/tmp",
        ])) == 0
    });
}

#[test]
#[ignore = "needs a KVM that boots Linux: runs in the lab (tests/lab/suite.sh)"]
fn postgres_initialises_takes_writes_and_keeps_them_across_stop_and_start() {
    ok(&[
        "run",
        "-d",
        "--name",
        "distro-pg",
        "-u",
        "postgres",
        debian(),
        "sh",
        "-c",
        POSTGRES,
    ]);
    wait_for_postgres();
    psql("CREATE TABLE t (n integer)");
    psql("INSERT INTO t SELECT generate_series(1, 10000)");
    assert_eq!(psql("SELECT sum(n) FROM t"), "50005000");
    // SIGTERM is PostgreSQL's smart shutdown: it checkpoints and exits 0.
    ok(&["stop", "-t", "60", "distro-pg"]);
    assert_eq!(inspect("distro-pg")["State"]["ExitCode"], 0);
    ok(&["start", "distro-pg"]);
    wait_for_postgres();
    assert_eq!(psql("SELECT count(*), sum(n) FROM t"), "10000|50005000");
    ok(&["rm", "-f", "distro-pg"]);
}

fn http_get(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    Some(reply)
}

#[test]
#[ignore = "needs a KVM that boots Linux: runs in the lab (tests/lab/suite.sh)"]
fn a_web_server_serves_a_host_directory_through_a_published_port() {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "served from the host\n").unwrap();
    let volume = format!("{}:/srv:ro", site.path().display());
    ok(&[
        "run",
        "-d",
        "--name",
        "distro-web",
        // The suite's default is HULL_NETWORK=none.
        "--network",
        "bridge",
        "-p",
        "127.0.0.1:18091:8000",
        "-v",
        &volume,
        debian(),
        "python3",
        "-m",
        "http.server",
        "-d",
        "/srv",
        "8000",
    ]);
    let mut reply = None;
    wait_until("the web server answers", Duration::from_secs(300), || {
        reply = http_get("127.0.0.1:18091");
        reply.as_deref().is_some_and(|r| r.contains("served from the host"))
    });
    assert!(reply.unwrap().starts_with("HTTP/1.0 200"));
    ok(&["rm", "-f", "distro-web"]);
}

#[test]
fn go_verbose_output_is_parsed_per_package_and_test() {
    let out = "=== package os\n\
               === RUN   TestChdir\n\
               --- PASS: TestChdir (0.01s)\n\
               --- FAIL: TestRemoveAll (0.00s)\n    \
                   --- SKIP: TestRemoveAll/sub (0.00s)\n\
               FAIL\n\
               === exit os 1\n\
               === package time\n\
               --- PASS: TestChdir (0.00s)\n\
               === exit time 0\n";
    let found = go_outcomes(out);
    assert_eq!(found["os TestChdir"], "ok");
    assert_eq!(found["os TestRemoveAll"], "FAIL");
    assert_eq!(found["os TestRemoveAll/sub"], "SKIP");
    assert_eq!(found["time TestChdir"], "ok");
    assert_eq!(found["os exit"], "exit 1");
    assert_eq!(found["time exit"], "ok");
    assert_eq!(found.len(), 6);
}

#[test]
fn verbose_output_is_parsed_per_test() {
    let out = "test_a (test.test_os.T.test_a) ... ok\n\
               test_b (test.test_os.T.test_b) ... FAIL\n\
               test_c (test.test_os.T.test_c) ... skipped 'needs root'\n\
               noise ... ok\n\
               test_d (test.test_os.T.test_d) ... \nprinted\nok\n\
               test_e (test.test_os.T.test_e)\nCheck the thing ... ERROR\n";
    let found = outcomes(out);
    assert_eq!(found.len(), 4);
    assert_eq!(found["test_e (test.test_os.T.test_e)"], "ERROR");
    assert_eq!(found["test_b (test.test_os.T.test_b)"], "FAIL");
    let reference = outcomes("test_a (test.test_os.T.test_a) ... ok\ntest_c (test.test_os.T.test_c) ... ok\n");
    assert_eq!(
        regressions(&reference, &found),
        ["test_c (test.test_os.T.test_c): skipped 'needs root'"]
    );
}
