//! One test per feature of the parser, the substitution, the stage resolution and the
//! ignore matcher.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

fn df(text: &str) -> Dockerfile {
    parse("Dockerfile", text).expect("parses")
}

fn err(text: &str) -> String {
    parse("Dockerfile", text).expect_err("fails").to_string()
}

fn commands(text: &str) -> Vec<Command> {
    df(text).instructions.into_iter().map(|i| i.command).collect()
}

fn resolved(text: &str, args: &[(&str, &str)], target: Option<&str>) -> Result<Resolved, DockerfileError> {
    let opts = BuildOptions {
        build_args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        target: target.map(str::to_owned),
        build_platform: Platform {
            os: "linux".into(),
            arch: "amd64".into(),
            variant: None,
        },
        target_platform: Platform {
            os: "linux".into(),
            arch: "arm64".into(),
            variant: Some("v8".into()),
        },
    };
    resolve(&df(text), &opts, &|_| Vec::new())
}

fn stage_commands(text: &str, args: &[(&str, &str)]) -> Vec<Command> {
    let r = resolved(text, args, None).expect("resolves");
    r.stages[r.target]
        .instructions
        .iter()
        .map(|i| i.command.clone())
        .collect()
}

fn workdir_of(text: &str, args: &[(&str, &str)]) -> String {
    stage_commands(text, args)
        .into_iter()
        .rev()
        .find_map(|c| match c {
            Command::Workdir(w) => Some(w),
            _ => None,
        })
        .expect("a WORKDIR")
}

fn run_of(c: &Command) -> &Run {
    match c {
        Command::Run(r) => r,
        other => panic!("not RUN: {other:?}"),
    }
}

fn copy_of(c: &Command) -> &Copy {
    match c {
        Command::Copy(c) => c,
        other => panic!("not COPY: {other:?}"),
    }
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

// ---- directives ----

#[test]
fn escape_directive_backtick_makes_backtick_the_continuation() {
    let d = df("# escape=`\nFROM scratch\nRUN echo a `\n  b\n");
    assert_eq!(d.escape, '`');
    assert_eq!(
        run_of(&d.instructions[1].command).command,
        CommandLine::Shell("echo a   b".into())
    );
}

#[test]
fn escape_directive_with_spaces_and_case_is_accepted() {
    assert_eq!(df("#  ESCAPE = \\\nFROM scratch\n").escape, '\\');
}

#[test]
fn syntax_and_check_directives_are_accepted_and_recorded_or_ignored() {
    let d = df("# syntax=docker/dockerfile:1\n# check=skip=all\nFROM scratch\n");
    assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(d.instructions.len(), 1);
}

#[test]
fn directive_after_a_comment_is_only_a_comment() {
    assert_eq!(df("# hello\n# escape=`\nFROM scratch\n").escape, '\\');
}

#[test]
fn directive_after_an_empty_line_is_only_a_comment() {
    assert_eq!(df("\n# escape=`\nFROM scratch\n").escape, '\\');
}

#[test]
fn unknown_directive_ends_the_directives() {
    assert_eq!(df("# foo=bar\n# escape=`\nFROM scratch\n").escape, '\\');
}

#[test]
fn duplicate_directive_is_an_error_naming_the_line() {
    assert_eq!(
        err("# escape=`\n# escape=\\\nFROM scratch\n"),
        "Dockerfile:2: parser directive escape given twice"
    );
}

#[test]
fn invalid_escape_value_is_an_error() {
    assert!(err("# escape=x\nFROM scratch\n").starts_with("Dockerfile:1: invalid escape directive"));
}

// ---- lines ----

#[test]
fn comments_and_empty_lines_are_skipped_and_lines_counted() {
    let d = df("\n# c\nFROM scratch\n\n   # indented comment\nRUN true\n");
    assert_eq!(d.instructions[0].line, 3);
    assert_eq!(d.instructions[1].line, 6);
}

#[test]
fn continuation_joins_lines_and_keeps_the_next_lines_indent() {
    let d = df("FROM scratch\nRUN echo a \\\n    b \\  \n c\n");
    assert_eq!(
        run_of(&d.instructions[1].command).command,
        CommandLine::Shell("echo a     b  c".into())
    );
    assert_eq!((d.instructions[1].line, d.instructions[1].end_line), (2, 4));
}

#[test]
fn comment_and_empty_lines_inside_continuation_are_dropped() {
    let d = df("FROM scratch\nRUN a \\\n# note\n\n  && b\n");
    assert_eq!(
        run_of(&d.instructions[1].command).command,
        CommandLine::Shell("a   && b".into())
    );
}

#[test]
fn continuation_at_end_of_file_ends_the_instruction() {
    let d = df("FROM scratch\nRUN echo hi \\");
    assert_eq!(
        run_of(&d.instructions[1].command).command,
        CommandLine::Shell("echo hi".into())
    );
}

#[test]
fn instructions_are_case_insensitive() {
    let c = commands("from scratch\nWorkDir /x\nrun true\n");
    assert!(matches!(c[1], Command::Workdir(_)));
    assert!(matches!(c[2], Command::Run(_)));
}

#[test]
fn crlf_line_endings_and_bom_are_accepted() {
    let c = commands("\u{feff}FROM scratch\r\nRUN a \\\r\n b\r\n");
    assert_eq!(run_of(&c[1]).command, CommandLine::Shell("a  b".into()));
}

// ---- forms ----

#[test]
fn json_form_is_exec_and_text_is_shell_form() {
    let c = commands("FROM scratch\nCMD [\"a\", \"b c\"]\nENTRYPOINT echo hi\n");
    assert_eq!(c[1], Command::Cmd(CommandLine::Exec(vec!["a".into(), "b c".into()])));
    assert_eq!(c[2], Command::Entrypoint(CommandLine::Shell("echo hi".into())));
}

#[test]
fn invalid_json_falls_back_to_shell_form() {
    let c = commands("FROM scratch\nCMD [\"a\", b]\nRUN ['single']\n");
    assert_eq!(c[1], Command::Cmd(CommandLine::Shell("[\"a\", b]".into())));
    assert_eq!(run_of(&c[2]).command, CommandLine::Shell("['single']".into()));
}

#[test]
fn shell_requires_json_form() {
    assert_eq!(
        commands("FROM scratch\nSHELL [\"/bin/bash\", \"-c\"]\n")[1],
        Command::Shell(vec!["/bin/bash".into(), "-c".into()])
    );
    assert!(err("FROM scratch\nSHELL /bin/bash -c\n").starts_with("Dockerfile:2: SHELL: requires"));
}

#[test]
fn copy_and_volume_accept_json_form() {
    let c = commands("FROM scratch\nCOPY [\"a b\", \"/dst/\"]\nVOLUME [\"/v1\", \"/v2\"]\nVOLUME /v3 /v4\n");
    let copy = copy_of(&c[1]);
    assert!(copy.exec_form);
    assert_eq!(copy.sources, vec![Source::Path("a b".into())]);
    assert_eq!(c[2], Command::Volume(vec!["/v1".into(), "/v2".into()]));
    assert_eq!(c[3], Command::Volume(vec!["/v3".into(), "/v4".into()]));
}

// ---- heredocs ----

#[test]
fn run_heredoc_body_is_read_and_not_parsed_as_instructions() {
    let d = df("FROM scratch\nRUN <<EOF\nFROM x\necho hi\nEOF\nCMD x\n");
    let run = run_of(&d.instructions[1].command);
    assert_eq!(run.command, CommandLine::Shell("<<EOF".into()));
    assert_eq!(run.heredocs[0].content, "FROM x\necho hi\n");
    assert!(run.heredocs[0].expand);
    assert_eq!(d.instructions[1].end_line, 5);
    assert_eq!(d.instructions[2].line, 6);
}

#[test]
fn dash_heredoc_strips_leading_tabs_of_body_and_terminator() {
    let d = df("FROM scratch\nRUN <<-EOF\n\t\techo hi\n\tEOF\n");
    let h = &run_of(&d.instructions[1].command).heredocs[0];
    assert_eq!(h.content, "echo hi\n");
    assert!(h.strip_tabs);
}

#[test]
fn quoted_heredoc_delimiter_turns_expansion_off() {
    let d = df("FROM scratch\nRUN <<'EOF' cat\n$HOME\nEOF\nRUN <<\"X\"\nb\nX\n");
    assert!(!run_of(&d.instructions[1].command).heredocs[0].expand);
    assert_eq!(run_of(&d.instructions[2].command).heredocs[0].name, "X");
}

#[test]
fn several_heredocs_on_one_line_are_read_in_order() {
    let d = df("FROM scratch\nRUN <<A cat > /a && 3<<B cat > /b\none\nA\ntwo\nB\n");
    let hs = &run_of(&d.instructions[1].command).heredocs;
    assert_eq!((hs[0].content.as_str(), hs[1].content.as_str()), ("one\n", "two\n"));
    assert_eq!(hs[1].fd, Some(3));
}

#[test]
fn copy_heredoc_is_an_inline_source_and_expands_unless_quoted() {
    let text = "FROM scratch\nARG V=1\nCOPY <<EOF /f\nv=$V \"q\"\nEOF\nCOPY <<'EOF' /g\nv=$V\nEOF\n";
    let c = stage_commands(text, &[]);
    match &copy_of(&c[1]).sources[0] {
        Source::Heredoc(h) => assert_eq!(h.content, "v=1 \"q\"\n"),
        other => panic!("{other:?}"),
    }
    match &copy_of(&c[2]).sources[0] {
        Source::Heredoc(h) => assert_eq!(h.content, "v=$V\n"),
        other => panic!("{other:?}"),
    }
    assert_eq!(copy_of(&c[1]).dest, "/f");
}

#[test]
fn unterminated_heredoc_is_an_error_naming_the_instruction_line() {
    assert_eq!(
        err("FROM scratch\nRUN <<EOF\necho\n"),
        "Dockerfile:2: unterminated heredoc EOF (no line EOF before the end of the file)"
    );
}

#[test]
fn heredoc_markers_in_exec_form_or_other_instructions_are_text() {
    let c = commands("FROM scratch\nRUN [\"<<EOF\"]\nCMD <<EOF\n");
    assert_eq!(run_of(&c[1]).command, CommandLine::Exec(vec!["<<EOF".into()]));
    assert_eq!(c[2], Command::Cmd(CommandLine::Shell("<<EOF".into())));
}

#[test]
fn onbuild_run_takes_heredocs() {
    let c = commands("FROM scratch\nONBUILD RUN <<EOF\nx\nEOF\n");
    let Command::Onbuild(trigger) = &c[1] else { panic!() };
    assert_eq!(run_of(&trigger.command).heredocs[0].content, "x\n");
}

// ---- flags and instructions ----

#[test]
fn from_platform_and_stage_name_are_parsed() {
    let c = commands("FROM --platform=$BUILDPLATFORM golang:1.22 AS Build\n");
    assert_eq!(
        c[0],
        Command::From(From {
            image: "golang:1.22".into(),
            name: Some("build".into()),
            platform: Some("$BUILDPLATFORM".into())
        })
    );
}

#[test]
fn from_with_wrong_arguments_is_an_error() {
    assert_eq!(
        err("FROM a b\n"),
        "Dockerfile:1: FROM requires either one argument, or three: image AS name"
    );
    assert_eq!(
        err("FROM\n"),
        "Dockerfile:1: FROM requires either one argument, or three: image AS name"
    );
}

#[test]
fn copy_flags_are_parsed() {
    let c = commands("FROM scratch\nCOPY --from=build --chown=1:2 --chmod=0755 --link a b /d/\n");
    let copy = copy_of(&c[1]);
    assert_eq!(copy.from.as_deref(), Some("build"));
    assert_eq!(copy.chown.as_deref(), Some("1:2"));
    assert_eq!(copy.chmod.as_deref(), Some("0755"));
    assert!(copy.link);
    assert_eq!(copy.sources.len(), 2);
}

#[test]
fn add_flags_are_parsed() {
    let c = commands("FROM scratch\nADD --chown=u --chmod=644 --checksum=sha256:abc --link=false https://x/y /y\n");
    let Command::Add(add) = &c[1] else { panic!() };
    assert_eq!(
        (
            add.chown.as_deref(),
            add.chmod.as_deref(),
            add.checksum.as_deref(),
            add.link
        ),
        (Some("u"), Some("644"), Some("sha256:abc"), false)
    );
}

#[test]
fn unknown_flag_is_an_error() {
    assert_eq!(
        err("FROM scratch\nCOPY --frm=x a b\n"),
        "Dockerfile:2: unknown flag: --frm (on COPY)"
    );
}

#[test]
fn flag_without_value_or_given_twice_is_an_error() {
    assert!(err("FROM scratch\nCOPY --from a b\n").contains("bad flag --from: missing a value"));
    assert!(err("FROM scratch\nCOPY --from=a --from=b a b\n").contains("given more than once"));
    assert!(err("FROM scratch\nCOPY --link=maybe a b\n").contains("expecting true or false"));
}

#[test]
fn run_mounts_network_and_security_are_typed() {
    let text = "FROM scratch\nRUN --mount=type=cache,target=/root/.cache,sharing=locked,id=go --mount=type=secret,id=tok,env=TOKEN,required \\\n --mount=type=ssh --mount=target=/src,from=build,rw --mount=type=tmpfs,target=/t,size=64m --network=none --security=insecure make\n";
    let c = commands(text);
    let run = run_of(&c[1]);
    assert_eq!(run.mounts.len(), 5);
    assert_eq!(run.mounts[0].kind, MountType::Cache);
    assert_eq!(run.mounts[0].sharing, Some(Sharing::Locked));
    assert_eq!(run.mounts[0].id.as_deref(), Some("go"));
    assert_eq!(
        (run.mounts[1].kind, run.mounts[1].env.as_deref(), run.mounts[1].required),
        (MountType::Secret, Some("TOKEN"), true)
    );
    assert_eq!(run.mounts[2].kind, MountType::Ssh);
    assert_eq!(
        (
            run.mounts[3].kind,
            run.mounts[3].readonly,
            run.mounts[3].from.as_deref()
        ),
        (MountType::Bind, false, Some("build"))
    );
    assert_eq!(run.mounts[4].size, Some(64 << 20));
    assert_eq!(
        (run.network, run.security),
        (Some(Network::None), Some(Security::Insecure))
    );
    assert_eq!(run.command, CommandLine::Shell("make".into()));
}

#[test]
fn bind_mount_is_read_only_unless_rw() {
    let c = commands("FROM scratch\nRUN --mount=target=/s true\n");
    assert!(run_of(&c[1]).mounts[0].readonly);
}

#[test]
fn bad_mount_is_an_error() {
    assert!(err("FROM scratch\nRUN --mount=type=nfs,target=/x true\n").contains("unknown mount type"));
    assert!(err("FROM scratch\nRUN --mount=type=cache true\n").contains("target is required"));
    assert!(err("FROM scratch\nRUN --mount=type=cache,target=/x,color=red true\n").contains("unexpected key"));
    assert!(err("FROM scratch\nRUN --network=bridge true\n").contains("expected default, none or host"));
}

#[test]
fn healthcheck_options_and_none() {
    let c = commands("FROM scratch\nHEALTHCHECK --interval=30s --timeout=1m30s --start-period=500ms --start-interval=2s --retries=3 CMD curl -f http://x/\nHEALTHCHECK NONE\n");
    let Command::Healthcheck(Healthcheck::Check { command, options }) = &c[1] else {
        panic!()
    };
    assert_eq!(command, &CommandLine::Shell("curl -f http://x/".into()));
    assert_eq!(options.interval, Some(Duration::from_secs(30)));
    assert_eq!(options.timeout, Some(Duration::from_secs(90)));
    assert_eq!(options.start_period, Some(Duration::from_millis(500)));
    assert_eq!(options.start_interval, Some(Duration::from_secs(2)));
    assert_eq!(options.retries, Some(3));
    assert_eq!(c[2], Command::Healthcheck(Healthcheck::None));
}

#[test]
fn healthcheck_bad_duration_or_kind_is_an_error() {
    assert!(err("FROM scratch\nHEALTHCHECK --interval=soon CMD true\n").contains("bad flag --interval"));
    assert!(err("FROM scratch\nHEALTHCHECK true\n").contains("expected NONE or CMD"));
}

#[test]
fn onbuild_wraps_an_instruction_but_not_from_maintainer_or_onbuild() {
    let c = commands("FROM scratch\nONBUILD COPY . /app\n");
    let Command::Onbuild(trigger) = &c[1] else { panic!() };
    assert_eq!((trigger.line, trigger.command.keyword()), (2, "COPY"));
    assert!(err("FROM scratch\nONBUILD ONBUILD RUN x\n").contains("chaining"));
    assert!(err("FROM scratch\nONBUILD FROM x\n").contains("FROM isn't allowed"));
}

#[test]
fn stopsignal_user_workdir_maintainer() {
    let c = commands(
        "FROM scratch\nSTOPSIGNAL SIGTERM\nUSER app:staff\nUSER 1000\nWORKDIR /srv/app\nMAINTAINER Jo <jo@x>\n",
    );
    assert_eq!(c[1], Command::StopSignal("SIGTERM".into()));
    assert_eq!(
        c[2],
        Command::User {
            user: "app".into(),
            group: Some("staff".into())
        }
    );
    assert_eq!(
        c[3],
        Command::User {
            user: "1000".into(),
            group: None
        }
    );
    assert_eq!(c[4], Command::Workdir("/srv/app".into()));
    assert_eq!(c[5], Command::Maintainer("Jo <jo@x>".into()));
}

#[test]
fn expose_ports_ranges_and_protocols() {
    let c = stage_commands("FROM scratch\nEXPOSE 80/tcp 53/udp 8000-8010\n", &[]);
    let Command::Expose(ports) = &c[0] else { panic!() };
    let parsed: Vec<ExposedPort> = ports.iter().map(|p| ExposedPort::parse(p).expect("port")).collect();
    assert_eq!(
        parsed[1],
        ExposedPort {
            first: 53,
            last: 53,
            protocol: PortProtocol::Udp
        }
    );
    assert_eq!(
        parsed[2],
        ExposedPort {
            first: 8000,
            last: 8010,
            protocol: PortProtocol::Tcp
        }
    );
    assert!(resolved("FROM scratch\nEXPOSE 99999\n", &[], None).is_err());
}

#[test]
fn label_pairs_quoted_values_and_old_form() {
    let c = stage_commands(
        "FROM scratch\nLABEL a=b c=\"d e\" \"f g\"=h\nLABEL old value with spaces\n",
        &[],
    );
    assert_eq!(
        c[0],
        Command::Label(vec![
            ("a".into(), "b".into()),
            ("c".into(), "d e".into()),
            ("f g".into(), "h".into())
        ])
    );
    assert_eq!(c[1], Command::Label(vec![("old".into(), "value with spaces".into())]));
}

#[test]
fn env_pairs_and_old_form() {
    let c = stage_commands("FROM scratch\nENV A=1 B=\"two words\" C=x\\ y\nENV D the rest\n", &[]);
    assert_eq!(
        c[0],
        Command::Env(vec![
            ("A".into(), "1".into()),
            ("B".into(), "two words".into()),
            ("C".into(), "x y".into())
        ])
    );
    assert_eq!(c[1], Command::Env(vec![("D".into(), "the rest".into())]));
}

#[test]
fn env_missing_equals_or_value_is_an_error() {
    assert!(err("FROM scratch\nENV A=1 B\n").contains("can't find = in \"B\""));
    assert_eq!(
        err("FROM scratch\nENV A\n"),
        "Dockerfile:2: ENV requires two arguments (name value) or name=value pairs"
    );
}

#[test]
fn arg_with_and_without_default() {
    let c = commands("ARG A B=2\nFROM scratch\n");
    assert_eq!(
        c[0],
        Command::Arg(vec![
            ArgDecl {
                name: "A".into(),
                default: None
            },
            ArgDecl {
                name: "B".into(),
                default: Some("2".into())
            }
        ])
    );
}

#[test]
fn unknown_instruction_names_the_line() {
    assert_eq!(
        err("FROM scratch\n\nRUNN x\n"),
        "Dockerfile:3: unknown instruction: RUNN"
    );
}

#[test]
fn missing_arguments_are_errors() {
    assert_eq!(
        err("FROM scratch\nRUN\n"),
        "Dockerfile:2: RUN requires at least one argument"
    );
    assert_eq!(
        err("FROM scratch\nCOPY a\n"),
        "Dockerfile:2: COPY requires at least two arguments: source(s) and destination"
    );
    assert_eq!(
        err("FROM scratch\nWORKDIR\n"),
        "Dockerfile:2: WORKDIR requires exactly one argument"
    );
}

#[test]
fn bad_stage_name_is_an_error() {
    assert!(err("FROM a AS 1x\n").contains("invalid stage name"));
}

#[test]
fn oversized_input_is_refused() {
    let big = "#".repeat(MAX_DOCKERFILE_BYTES + 1);
    assert!(err(&big).contains("too large"));
}

// ---- substitution ----

#[test]
fn dollar_and_braces_expand() {
    let v = vars(&[("A", "1"), ("B_2", "x")]);
    assert_eq!(expand_word("$A-${B_2}.$A_", '\\', &v).unwrap(), "1-x.");
}

#[test]
fn default_and_alternative_modifiers() {
    let v = vars(&[("SET", "v"), ("EMPTY", "")]);
    let e = |t: &str| expand_word(t, '\\', &v).unwrap();
    assert_eq!(e("${UNSET:-d} ${EMPTY:-d} ${SET:-d}"), "d d v");
    assert_eq!(e("${UNSET-d}|${EMPTY-d}|${SET-d}"), "d||v");
    assert_eq!(e("${UNSET:+a}|${EMPTY:+a}|${SET:+a}"), "||a");
    assert_eq!(e("${UNSET+a}|${EMPTY+a}|${SET+a}"), "|a|a");
}

#[test]
fn required_modifier_errors_when_unset() {
    let v = vars(&[]);
    assert_eq!(expand_word("${X:?need X}", '\\', &v).unwrap_err(), "X: need X");
}

#[test]
fn nested_substitution_in_the_default_word() {
    let v = vars(&[("B", "b")]);
    assert_eq!(expand_word("${A:-${B}/${C:-c}}", '\\', &v).unwrap(), "b/c");
}

#[test]
fn escaped_dollar_and_single_quotes_are_literal() {
    let v = vars(&[("A", "1")]);
    assert_eq!(
        expand_word("\\$A '$A' \"$A\" \"\\$A\"", '\\', &v).unwrap(),
        "$A $A 1 $A"
    );
    assert_eq!(expand_word("`$A", '`', &v).unwrap(), "$A");
}

#[test]
fn bad_substitution_is_an_error() {
    let v = vars(&[]);
    assert!(expand_word("${", '\\', &v).is_err());
    assert!(expand_word("${A", '\\', &v).is_err());
    assert!(expand_word("${A:-x", '\\', &v).is_err());
    assert!(expand_word("'open", '\\', &v).is_err());
    assert!(expand_word("${A/x/y}", '\\', &v).is_err());
}

#[test]
fn deep_nesting_is_refused() {
    let text = format!(
        "{}x{}",
        "${A:-".repeat(MAX_EXPANSION_DEPTH + 2),
        "}".repeat(MAX_EXPANSION_DEPTH + 2)
    );
    assert!(expand_word(&text, '\\', &vars(&[]))
        .unwrap_err()
        .contains("nested too deeply"));
}

#[test]
fn exponential_growth_through_env_is_bounded() {
    let mut text = String::from("FROM scratch\nENV A=aaaaaaaaaaaaaaaa\n");
    for _ in 0..20 {
        text.push_str("ENV A=$A$A\n");
    }
    let e = resolved(&text, &[], None).unwrap_err().to_string();
    assert!(e.contains("expansion longer than"), "{e}");
}

#[test]
fn run_cmd_entrypoint_are_not_expanded() {
    let c = stage_commands(
        "FROM scratch\nARG A=1\nRUN echo $A\nCMD echo $A\nENTRYPOINT [\"$A\"]\n",
        &[],
    );
    assert_eq!(run_of(&c[1]).command, CommandLine::Shell("echo $A".into()));
    assert_eq!(c[2], Command::Cmd(CommandLine::Shell("echo $A".into())));
    assert_eq!(c[3], Command::Entrypoint(CommandLine::Exec(vec!["$A".into()])));
}

#[test]
fn substituting_instructions_are_expanded() {
    let text = "FROM scratch\nARG D=/data U=app P=8080 S=TERM\nCOPY --chown=$U ${D}/in $D/out\nADD --chmod=$P x $D\nVOLUME $D\nUSER $U:$U\nEXPOSE $P\nSTOPSIGNAL SIG$S\nLABEL dir=$D\nWORKDIR $D\n";
    let c = stage_commands(text, &[]);
    assert_eq!(copy_of(&c[1]).sources, vec![Source::Path("/data/in".into())]);
    assert_eq!(copy_of(&c[1]).chown.as_deref(), Some("app"));
    assert_eq!(c[3], Command::Volume(vec!["/data".into()]));
    assert_eq!(
        c[4],
        Command::User {
            user: "app".into(),
            group: Some("app".into())
        }
    );
    assert_eq!(c[5], Command::Expose(vec!["8080".into()]));
    assert_eq!(c[6], Command::StopSignal("SIGTERM".into()));
    assert_eq!(c[8], Command::Workdir("/data".into()));
}

#[test]
fn env_pairs_on_one_line_see_the_previous_values() {
    let c = stage_commands("FROM scratch\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n", &[]);
    assert_eq!(
        c[1],
        Command::Env(vec![("abc".into(), "bye".into()), ("def".into(), "hello".into())])
    );
    assert_eq!(c[2], Command::Env(vec![("ghi".into(), "bye".into())]));
}

// ---- scoping ----

#[test]
fn global_args_are_usable_in_from_lines_only() {
    let text = "ARG V=3.20\nARG IMG=alpine:$V\nFROM $IMG\nWORKDIR /x$V\n";
    let r = resolved(text, &[], None).unwrap();
    assert_eq!(r.stages[0].base, StageBase::Image("alpine:3.20".into()));
    assert_eq!(workdir_of(text, &[]), "/x");
}

#[test]
fn redeclared_arg_in_stage_inherits_the_global_value() {
    let text = "ARG V=1\nFROM scratch\nARG V\nWORKDIR /$V\n";
    assert_eq!(workdir_of(text, &[]), "/1");
    assert_eq!(workdir_of(text, &[("V", "9")]), "/9");
}

#[test]
fn stage_arg_is_in_scope_from_declaration_to_stage_end() {
    let text = "FROM scratch\nWORKDIR /a$X\nARG X=1\nWORKDIR /b$X\nFROM scratch\nWORKDIR /c$X\n";
    let r = resolved(text, &[], None).unwrap();
    let w = |s: usize, i: usize| r.stages[s].instructions[i].command.clone();
    assert_eq!(w(0, 0), Command::Workdir("/a".into()));
    assert_eq!(w(0, 2), Command::Workdir("/b1".into()));
    assert_eq!(w(1, 0), Command::Workdir("/c".into()));
}

#[test]
fn env_overrides_arg_of_the_same_name() {
    assert_eq!(
        workdir_of("FROM scratch\nARG V=arg\nENV V=env\nARG V=again\nWORKDIR /$V\n", &[]),
        "/env"
    );
}

#[test]
fn build_args_override_defaults_but_only_for_declared_args() {
    let text = "FROM scratch\nARG V=def\nWORKDIR /$V$W\n";
    assert_eq!(workdir_of(text, &[("V", "cli"), ("W", "x")]), "/cli");
    let r = resolved(text, &[("V", "cli"), ("W", "x")], None).unwrap();
    assert_eq!(r.unused_build_args, vec!["W".to_string()]);
}

#[test]
fn platform_args_are_global_and_need_declaring_in_a_stage() {
    let text = "FROM --platform=$BUILDPLATFORM scratch\nWORKDIR /$TARGETARCH\nARG TARGETARCH TARGETPLATFORM\nWORKDIR /$TARGETARCH/$TARGETPLATFORM\n";
    let r = resolved(text, &[], None).unwrap();
    assert_eq!(r.stages[0].platform.as_deref(), Some("linux/amd64"));
    assert_eq!(r.stages[0].instructions[0].command, Command::Workdir("/".into()));
    assert_eq!(
        r.stages[0].instructions[2].command,
        Command::Workdir("/arm64/linux/arm64/v8".into())
    );
}

#[test]
fn proxy_args_need_no_declaration_and_reach_run() {
    let r = resolved("FROM scratch\nRUN true\n", &[("HTTP_PROXY", "http://p:3128")], None).unwrap();
    assert_eq!(
        run_of(&r.stages[0].instructions[0].command).build_args,
        vec![("HTTP_PROXY".into(), "http://p:3128".into())]
    );
    assert!(r.unused_build_args.is_empty());
}

#[test]
fn run_sees_the_args_in_scope() {
    let r = resolved("FROM scratch\nARG A=1\nRUN true\n", &[], None).unwrap();
    assert_eq!(
        run_of(&r.stages[0].instructions[1].command).build_args,
        vec![("A".into(), "1".into())]
    );
}

#[test]
fn stage_env_is_inherited_by_a_stage_built_on_it() {
    let text = "FROM scratch AS base\nENV P=/opt\nFROM base\nWORKDIR $P/x\n";
    let r = resolved(text, &[], None).unwrap();
    assert_eq!(r.stages[1].base, StageBase::Stage(0));
    assert_eq!(r.stages[1].instructions[0].command, Command::Workdir("/opt/x".into()));
}

#[test]
fn base_image_env_is_used_for_substitution() {
    let opts = BuildOptions::default();
    let image_env = |img: &str| {
        if img == "img" {
            vec![("HOME".to_string(), "/home/u".to_string())]
        } else {
            Vec::new()
        }
    };
    let r = resolve(&df("FROM img\nWORKDIR $HOME\n"), &opts, &image_env).unwrap();
    assert_eq!(r.stages[0].instructions[0].command, Command::Workdir("/home/u".into()));
}

// ---- stages ----

#[test]
fn stages_names_and_references_by_name_or_index() {
    let text = "FROM alpine AS build\nRUN make\nFROM scratch AS out\nCOPY --from=build /a /a\nCOPY --from=0 /b /b\nCOPY --from=nginx:1 /c /c\nRUN --mount=from=build,target=/s true\n";
    let r = resolved(text, &[], None).unwrap();
    assert_eq!(r.stages.len(), 2);
    assert_eq!(r.stages[1].name.as_deref(), Some("out"));
    assert_eq!(r.stages[1].depends_on, vec![0]);
    assert_eq!(r.from_ref("build", 1), FromRef::Stage(0));
    assert_eq!(r.from_ref("nginx:1", 1), FromRef::Image("nginx:1".into()));
    assert_eq!(r.needed(), vec![0, 1]);
}

#[test]
fn target_selects_a_stage_and_drops_later_ones() {
    let text = "FROM scratch AS a\nFROM scratch AS b\nFROM scratch AS c\n";
    let r = resolved(text, &[], Some("B")).unwrap();
    assert_eq!((r.target, r.stages.len()), (1, 2));
    assert_eq!(r.needed(), vec![1]);
}

#[test]
fn unknown_target_is_a_clear_error() {
    let e = resolved("FROM scratch AS a\n", &[], Some("nope")).unwrap_err();
    assert_eq!(e.to_string(), "Dockerfile: target stage \"nope\" could not be found");
}

#[test]
fn no_from_is_an_error() {
    assert_eq!(
        resolved("ARG A\n", &[], None).unwrap_err().to_string(),
        "Dockerfile: no FROM instruction: a Dockerfile needs at least one build stage"
    );
}

#[test]
fn only_arg_may_precede_from() {
    assert_eq!(
        resolved("RUN x\nFROM scratch\n", &[], None).unwrap_err().to_string(),
        "Dockerfile:1: RUN is not allowed before the first FROM (only ARG is)"
    );
}

#[test]
fn duplicate_stage_names_and_forward_index_references_are_errors() {
    assert!(resolved("FROM scratch AS a\nFROM scratch AS A\n", &[], None)
        .unwrap_err()
        .to_string()
        .contains("duplicate stage name"));
    assert!(resolved("FROM scratch\nCOPY --from=0 /a /b\n", &[], None)
        .unwrap_err()
        .to_string()
        .contains("refers to itself"));
}

#[test]
fn scratch_is_no_image() {
    assert_eq!(
        resolved("FROM SCRATCH\n", &[], None).unwrap().stages[0].base,
        StageBase::Scratch
    );
}

// ---- .dockerignore ----

fn ignore(text: &str) -> DockerIgnore {
    DockerIgnore::parse(text).expect("parses")
}

#[test]
fn ignore_comments_blank_lines_and_whitespace() {
    let i = ignore("# comment\n\n  *.log  \n");
    assert_eq!(i.patterns.len(), 1);
    assert!(i.is_excluded("a.log"));
    assert!(!i.is_excluded("dir/a.log"));
}

#[test]
fn ignore_patterns_are_cleaned_and_leading_slash_dropped() {
    let i = ignore("/build/../out/./x\n./tmp/\n");
    assert_eq!(i.patterns[0].text, "out/x");
    assert_eq!(i.patterns[1].text, "tmp");
    assert!(i.is_excluded("out/x"));
    assert!(i.is_excluded("tmp/file"));
}

#[test]
fn ignore_double_star_crosses_directories() {
    let i = ignore("**/*.go\na/**/z\nlogs/**\n");
    assert!(i.is_excluded("main.go"));
    assert!(i.is_excluded("x/y/main.go"));
    assert!(i.is_excluded("a/z") && i.is_excluded("a/b/c/z"));
    assert!(i.is_excluded("logs/1/2"));
    assert!(!i.is_excluded("a/zz"));
}

#[test]
fn ignore_star_and_question_mark_stay_in_one_segment() {
    let i = ignore("*/temp*\nfile?.txt\n[a-c]x\n[^a]y\n");
    assert!(i.is_excluded("dir/temporary"));
    assert!(!i.is_excluded("dir/sub/temporary"));
    assert!(i.is_excluded("file1.txt") && !i.is_excluded("file10.txt"));
    assert!(i.is_excluded("bx") && !i.is_excluded("dx"));
    assert!(i.is_excluded("by") && !i.is_excluded("ay"));
}

#[test]
fn ignore_directory_match_excludes_its_contents() {
    let i = ignore("node_modules\n");
    assert!(i.is_excluded("node_modules/left-pad/index.js"));
}

#[test]
fn ignore_exceptions_last_match_wins() {
    let i = ignore("*.md\n!README.md\nREADME-secret.md\n");
    assert!(i.is_excluded("a.md"));
    assert!(!i.is_excluded("README.md"));
    assert!(i.is_excluded("README-secret.md"));
    let j = ignore("!README.md\n*.md\n");
    assert!(j.is_excluded("README.md"));
}

#[test]
fn ignore_exception_reincludes_beneath_an_excluded_directory() {
    let i = ignore("docs\n!docs/keep/**\n");
    assert!(i.is_excluded("docs/a"));
    assert!(!i.is_excluded("docs/keep/b"));
    assert!(i.must_walk("docs"));
    assert!(!ignore("docs\n!other\n").must_walk("docs"));
    assert!(ignore("docs\n!**/*.txt\n").must_walk("docs"));
}

#[test]
fn ignore_escape_makes_metacharacters_literal() {
    let i = ignore("a\\*b\n");
    assert!(i.is_excluded("a*b") && !i.is_excluded("axb"));
}

#[test]
fn ignore_bad_pattern_is_an_error_with_line() {
    assert_eq!(
        DockerIgnore::parse("ok\n[abc\n").unwrap_err(),
        IgnoreError::BadPattern {
            line: 2,
            pattern: "[abc".into(),
            reason: "unterminated ["
        }
    );
}

#[test]
fn dockerfile_and_dockerignore_are_always_sent() {
    let i = ignore("*\n").keeping_build_files("build/Dockerfile.dev");
    assert!(!i.is_excluded("build/Dockerfile.dev"));
    assert!(!i.is_excluded(".dockerignore"));
    assert!(i.is_excluded("src/main.rs"));
    assert!(always_sent("./build/Dockerfile.dev", "build/Dockerfile.dev"));
    assert!(always_sent(".dockerignore", "Dockerfile"));
    assert!(!always_sent("Dockerfile2", "Dockerfile"));
}

#[test]
fn copying_huge_values_across_many_lines_is_bounded() {
    let mut text = String::from("FROM scratch\nENV A=aaaaaaaaaaaaaaaa\n");
    for _ in 0..15 {
        text.push_str("ENV A=$A$A\n");
    }
    for i in 0..200 {
        text.push_str(&format!("ENV B{i}=$A\n"));
    }
    let e = resolved(&text, &[], None).unwrap_err().to_string();
    assert!(e.contains("over 64 MiB in all"), "{e}");
}

#[test]
fn many_variables_resolve_in_linear_time() {
    let pairs: Vec<String> = (0..50_000).map(|i| format!("V{i}=x")).collect();
    let text = format!(
        "FROM scratch\nENV {}\nARG {}\nWORKDIR /$V49999\n",
        pairs.join(" "),
        pairs.join(" ")
    );
    assert_eq!(workdir_of(&text, &[]), "/x");
}

#[test]
fn ignore_overlong_pattern_is_refused() {
    assert!(DockerIgnore::parse(&"a".repeat(MAX_PATTERN_CHARS + 1)).is_err());
}
