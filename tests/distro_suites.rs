//! Real programs' own test suites in a real distribution image: CPython's regression
//! tests (Debian's `libpython3.11-testsuite`) in a Debian bookworm image made with
//! `debootstrap`, run in a hull container and compared, test by test, with the same
//! run in a plain chroot of the same tree on the host.
//!
//! `tests/lab/debian-image.sh` makes the image and the reference run; its directory
//! comes in `HULL_DEBIAN_IMAGE`. A lab test (`#[ignore]`d on the host), run by
//! `tests/lab/suite.sh` in an L1 of its own.

use std::collections::BTreeMap;
use std::path::PathBuf;

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
    let dir = PathBuf::from(std::env::var_os("HULL_DEBIAN_IMAGE").expect("tests/lab/suite.sh sets HULL_DEBIAN_IMAGE"));
    let modules = std::fs::read_to_string(dir.join("modules.txt")).unwrap();
    let reference = outcomes(&std::fs::read_to_string(dir.join("reference.txt")).unwrap());
    assert!(
        reference.values().filter(|o| *o == "ok").count() > 500,
        "the reference ran too little"
    );

    ok(&["import", dir.join("image.tar").to_str().unwrap(), "debian:python"]);
    let mut args = vec!["run", "--rm", "debian:python", "python3", "-m", "test", "-v"];
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
    ok(&["rmi", "debian:python"]);
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
