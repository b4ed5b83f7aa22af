//! Parses and resolves every Dockerfile under tests/fixtures/dockerfiles/ and checks
//! what each one is about; files under bad/ must fail with the error their first line
//! (`# expect: ...`) names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hull::image::dockerfile::{
    parse, resolve, BuildOptions, Command, CommandLine, Copy, Dockerfile, Healthcheck, MountType, Platform, Resolved,
    Source, StageBase,
};

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dockerfiles")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("fixture dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    files.sort();
    files
}

fn options(target: Option<&str>) -> BuildOptions {
    BuildOptions {
        build_args: BTreeMap::new(),
        target: target.map(str::to_owned),
        build_platform: Platform {
            os: "linux".into(),
            arch: "amd64".into(),
            variant: None,
        },
        target_platform: Platform {
            os: "linux".into(),
            arch: "arm64".into(),
            variant: None,
        },
    }
}

fn load(name: &str) -> (Dockerfile, Resolved) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dockerfiles")
        .join(name);
    let text = std::fs::read_to_string(path).expect("fixture");
    let df = parse("Dockerfile", &text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let resolved = resolve(&df, &options(None), &|_| Vec::new()).unwrap_or_else(|e| panic!("{name}: {e}"));
    (df, resolved)
}

fn copies(r: &Resolved, stage: usize) -> Vec<Copy> {
    r.stages[stage]
        .instructions
        .iter()
        .filter_map(|i| match &i.command {
            Command::Copy(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn workdirs(r: &Resolved, stage: usize) -> Vec<String> {
    r.stages[stage]
        .instructions
        .iter()
        .filter_map(|i| match &i.command {
            Command::Workdir(w) => Some(w.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn every_good_fixture_parses_and_resolves() {
    let files = fixtures("");
    assert!(files.len() >= 6, "corpus too small: {files:?}");
    for file in files {
        let name = file.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
        let (_, r) = load(&name);
        assert!(!r.stages.is_empty(), "{name}");
    }
}

#[test]
fn every_bad_fixture_fails_with_its_expected_error() {
    let files = fixtures("bad");
    assert!(files.len() >= 6);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("fixture");
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .expect("an # expect: line");
        let target = text.lines().nth(1).and_then(|l| l.strip_prefix("# target: "));
        let result = parse("Dockerfile", &text).and_then(|df| resolve(&df, &options(target), &|_| Vec::new()));
        let error = result.expect_err(expect).to_string();
        assert!(
            error.starts_with(expect),
            "{}: got {error:?}, want {expect:?}",
            file.display()
        );
    }
}

#[test]
fn multistage_go_resolves_platform_args_stages_and_mounts() {
    let (df, r) = load("multistage-go.Dockerfile");
    assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1.7"));
    assert_eq!(r.stages.len(), 2);
    assert_eq!(r.stages[0].base, StageBase::Image("golang:1.22-alpine".into()));
    assert_eq!(r.stages[0].platform.as_deref(), Some("linux/amd64"));
    let Command::Run(run) = &r.stages[0].instructions[2].command else {
        panic!("RUN")
    };
    assert_eq!(
        run.mounts.iter().map(|m| m.kind).collect::<Vec<_>>(),
        vec![MountType::Cache, MountType::Bind]
    );
    assert!(run.build_args.contains(&("TARGETARCH".into(), "arm64".into())));
    assert_eq!(copies(&r, 1)[0].from.as_deref(), Some("build"));
    assert_eq!(r.stages[1].depends_on, vec![0]);
    assert_eq!(r.needed(), vec![0, 1]);
}

#[test]
fn heredoc_fixture_reads_bodies_and_expands_only_unquoted_copy_heredocs() {
    let (df, r) = load("heredocs.Dockerfile");
    assert_eq!(df.instructions.len(), 8);
    let bodies: Vec<String> = copies(&r, 0)
        .into_iter()
        .map(|c| match &c.sources[0] {
            Source::Heredoc(h) => h.content.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        bodies,
        vec!["greeting=hello\n".to_string(), "greeting=$GREETING\n".to_string()]
    );
    let Command::Run(run) = &df.instructions[3].command else {
        panic!("RUN")
    };
    assert_eq!(run.heredocs[0].content, "echo indented\n");
    let Command::Run(two) = &df.instructions[6].command else {
        panic!("RUN")
    };
    assert_eq!(two.heredocs.len(), 2);
    assert_eq!(df.instructions[7].line, 21);
}

#[test]
fn windows_fixture_uses_backtick_escape() {
    let (df, r) = load("windows-escape.Dockerfile");
    assert_eq!(df.escape, '`');
    assert_eq!(workdirs(&r, 0), vec!["C:\\app".to_string()]);
    let Command::Run(run) = &df.instructions[2].command else {
        panic!("RUN")
    };
    assert_eq!(run.command, CommandLine::Shell("echo one     && echo two".into()));
    assert_eq!(copies(&r, 0)[0].dest, "C:\\app\\");
}

#[test]
fn legacy_fixture_accepts_old_forms() {
    let (df, r) = load("legacy-forms.Dockerfile");
    let cmds: Vec<&Command> = r.stages[0].instructions.iter().map(|i| &i.command).collect();
    assert_eq!(cmds[0], &Command::Maintainer("Jane Doe <jane@example.com>".into()));
    assert_eq!(cmds[1], &Command::Env(vec![("PATH".into(), "/opt/bin:".into())]));
    assert_eq!(cmds[2], &Command::Label(vec![("version".into(), "1.0 beta".into())]));
    assert_eq!(
        cmds[3],
        &Command::Label(vec![
            ("a".into(), "1".into()),
            ("b".into(), "two words".into()),
            ("c".into(), "three words".into())
        ])
    );
    assert!(matches!(cmds[4], Command::Onbuild(_)));
    assert!(matches!(cmds[7], Command::Healthcheck(Healthcheck::Check { .. })));
    assert_eq!(df.instructions.len(), 11);
}

#[test]
fn args_fixture_scopes_global_and_stage_args() {
    let (_, r) = load("args-scoping.Dockerfile");
    assert_eq!(r.stages[0].base, StageBase::Image("alpine:3.19".into()));
    assert_eq!(workdirs(&r, 0), vec!["/srv/3.19-x".to_string()]);
    assert_eq!(r.stages[1].base, StageBase::Stage(0));
    assert_eq!(workdirs(&r, 1), vec!["/srv/3.19-x/test".to_string()]);
    assert_eq!(workdirs(&r, 2), vec!["unset".to_string()]);
    assert_eq!(r.needed(), vec![0, 2]);
}

#[test]
fn comments_fixture_drops_comments_inside_continuations() {
    let (df, _) = load("comments-continuations.Dockerfile");
    assert_eq!(df.escape, '\\');
    let Command::Run(run) = &df.instructions[1].command else {
        panic!("RUN")
    };
    assert_eq!(
        run.command,
        CommandLine::Shell("apt-get update &&     apt-get install -y       curl       git".into())
    );
    assert_eq!((df.instructions[1].line, df.instructions[2].line), (6, 12));
}
