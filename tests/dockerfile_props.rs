//! Properties of the Dockerfile parser and the ignore matcher: no input panics, and
//! line continuations join back to the text they split.

use hull::image::dockerfile::{parse, resolve, BuildOptions, Command, CommandLine, DockerIgnore};
use proptest::prelude::*;

fn dockerfile_ish() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "FROM ",
        "RUN ",
        "COPY ",
        "ADD ",
        "ENV ",
        "ARG ",
        "LABEL ",
        "ONBUILD ",
        "HEALTHCHECK ",
        "CMD ",
        "EXPOSE ",
        "--mount=",
        "--from=",
        "type=cache,",
        "<<EOF",
        "<<-E",
        "EOF",
        "\n",
        "\\\n",
        "`",
        "# escape=`\n",
        "#",
        "$",
        "${",
        "}",
        ":-",
        ":+",
        "\"",
        "'",
        "[",
        "]",
        "\"a\",",
        "=",
        " ",
        "\t",
        "x",
        "AS b",
        "0",
        "-",
    ]);
    prop::collection::vec(pieces, 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        if let Ok(df) = parse("Dockerfile", &text) {
            let _ = resolve(&df, &BuildOptions::default(), &|_| Vec::new());
        }
        let _ = DockerIgnore::parse(&text).map(|i| (i.is_excluded("a/b"), i.must_walk("a")));
    }

    #[test]
    fn dockerfile_shaped_text_never_panics(text in dockerfile_ish()) {
        if let Ok(df) = parse("Dockerfile", &text) {
            let _ = resolve(&df, &BuildOptions::default(), &|_| Vec::new());
        }
    }

    #[test]
    fn ignore_patterns_never_panic(patterns in prop::collection::vec("[!*?/\\[\\]a-c.\\\\^-]{0,12}", 0..8), path in "[a-c/.*]{0,16}") {
        if let Ok(ignore) = DockerIgnore::parse(&patterns.join("\n")) {
            let _ = ignore.is_excluded(&path);
            let _ = ignore.must_walk(&path);
        }
    }

    /// Splitting a RUN line anywhere between words with escape+newline (with comment
    /// lines in between) yields the same command as the unsplit line.
    #[test]
    fn continuations_round_trip(words in prop::collection::vec("[a-z0-9&|;=.]{1,8}", 1..12), splits in prop::collection::vec(any::<bool>(), 12), backtick in any::<bool>()) {
        let escape = if backtick { '`' } else { '\\' };
        let mut text = String::from(if backtick { "# escape=`\nFROM scratch\nRUN" } else { "FROM scratch\nRUN" });
        let mut expected = String::new();
        for (i, word) in words.iter().enumerate() {
            if splits[i] {
                text.push_str(&format!(" {escape}\n# comment\n"));
                expected.push(' ');
            } else {
                text.push(' ');
                expected.push(' ');
            }
            text.push_str(word);
            expected.push_str(word);
        }
        let df = parse("Dockerfile", &text).expect("parses");
        let Command::Run(run) = &df.instructions[1].command else { panic!("RUN") };
        prop_assert_eq!(&run.command, &CommandLine::Shell(expected.trim_start().to_owned()));
        prop_assert_eq!(df.escape, escape);
    }
}
