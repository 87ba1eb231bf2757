//! `docs/tutorial.md`, run as a reader runs it: every command of its `console` blocks, in order, in one shell
//! in an empty directory with this build's `trialport` first on the `PATH`, each compared with the output the
//! tutorial shows.
//!
//! The tutorial's notation: a line starting with `$ ` is a command (standard output and error both shown, as in a
//! terminal; it must exit 0, so a command shown failing ends with `|| echo "exit $?"`); the lines after it are its
//! output, compared after runs of blanks are made one space. `<...>` (any text between angle brackets) stands for
//! text that differs from run to run (ids, keys, times, checksums) and matches one or more characters; a line
//! that is only `<...>` matches any number of lines.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

/// One command of the tutorial and the output it shows.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
}

/// The steps of every `console` block of `markdown`, in order.
fn steps(markdown: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_console = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_console = !in_console && line.trim() == "```console";
            continue;
        }
        if !in_console {
            continue;
        }
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                command: command.to_string(),
                expected: Vec::new(),
            });
        } else {
            let step = steps
                .last_mut()
                .expect("a console block starts with a command");
            step.expected.push(line.to_string());
        }
    }
    steps
}

/// Runs of blanks made one space, ends trimmed.
fn squeeze(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A part of an expected line: literal text, or a placeholder.
enum Part<'a> {
    Literal(&'a str),
    Any,
}

/// The parts of an expected line.
fn parts(pattern: &str) -> Vec<Part<'_>> {
    let mut parts = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>').map(|c| open + c) else {
            break;
        };
        if rest[open + 1..close].contains('<') || close == open + 1 {
            parts.push(Part::Literal(&rest[..open + 1]));
            rest = &rest[open + 1..];
            continue;
        }
        parts.push(Part::Literal(&rest[..open]));
        parts.push(Part::Any);
        rest = &rest[close + 1..];
    }
    parts.push(Part::Literal(rest));
    parts
}

fn glob(parts: &[Part<'_>], text: &str) -> bool {
    match parts.split_first() {
        None => text.is_empty(),
        Some((Part::Literal(l), rest)) => text.strip_prefix(l).is_some_and(|t| glob(rest, t)),
        // A placeholder takes one character or more.
        Some((Part::Any, rest)) => (1..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .any(|i| glob(rest, &text[i..])),
    }
}

/// Whether `text` matches `pattern`, whose `<...>` parts match one or more characters.
fn matches_line(pattern: &str, text: &str) -> bool {
    glob(&parts(pattern), text)
}

/// Whether `actual` lines match `expected` lines (a line `<...>` alone matches any number of lines).
fn matches_lines(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest))
            if first.starts_with('<') && first.ends_with('>') && !first[1..].contains('<') =>
        {
            (0..=actual.len()).any(|skip| matches_lines(rest, &actual[skip..]))
        }
        Some((first, rest)) => actual
            .split_first()
            .is_some_and(|(line, others)| matches_line(first, line) && matches_lines(rest, others)),
    }
}

#[test]
fn matcher_takes_placeholders_and_skipped_lines() {
    assert!(matches_line("id <job id>", "id 01a2-3"));
    assert!(!matches_line("id <job id>", "id "));
    assert!(matches_line(
        "dm.csv text/csv <bytes> 3 <sha256>",
        "dm.csv text/csv 194 3 16ab"
    ));
    assert!(!matches_line(
        "dm.csv text/csv <bytes> 3 <sha256>",
        "dm.csv text/csv 194 4 16ab"
    ));
    assert!(matches_line(
        "\"api_key\": \"tp_<key>\",",
        "\"api_key\": \"tp_ab_cd\","
    ));
    assert!(!matches_line("exact", "exactly"));
    let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(matches_lines(
        &lines(&["a", "<...>", "z"]),
        &lines(&["a", "b", "c", "z"])
    ));
    assert!(matches_lines(
        &lines(&["a", "<...>", "z"]),
        &lines(&["a", "z"])
    ));
    assert!(!matches_lines(
        &lines(&["a", "z"]),
        &lines(&["a", "b", "z"])
    ));
}

#[test]
fn the_tutorial_runs_as_written() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let markdown = std::fs::read_to_string(repo.join("docs/tutorial.md")).unwrap();
    let steps = steps(&markdown);
    assert!(
        steps.len() >= 20,
        "the tutorial has {} commands",
        steps.len()
    );
    let work = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_trialport")).parent().unwrap();
    // One shell, so that `export` and files carry over from step to step, as in the reader's terminal.
    let mut script = String::from("exec 2>&1\nset -o pipefail\n");
    for step in &steps {
        script.push_str(&step.command);
        script.push_str("\necho \"@@end $?\"\n");
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(work.path())
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env_remove("TRIALPORT_HOME")
        .env_remove("TRIALPORT_CREDENTIAL")
        .env_remove("TRIALPORT_SIGN_PASSWORD")
        .env("TMPDIR", work.path())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut outputs: Vec<(Vec<String>, String)> = Vec::new();
    let mut current = Vec::new();
    for line in text.lines() {
        if let Some(code) = line.strip_prefix("@@end ") {
            outputs.push((std::mem::take(&mut current), code.to_string()));
        } else {
            current.push(squeeze(line));
        }
    }
    assert_eq!(outputs.len(), steps.len(), "{text}");
    for (step, (actual, code)) in steps.iter().zip(&outputs) {
        assert_eq!(
            code,
            "0",
            "`{}` exited {code}:\n{}",
            step.command,
            actual.join("\n")
        );
        let expected: Vec<String> = step.expected.iter().map(|l| squeeze(l)).collect();
        let expected: Vec<String> = expected
            .into_iter()
            .rev()
            .skip_while(String::is_empty)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let actual: Vec<String> = actual
            .iter()
            .rev()
            .skip_while(|l| l.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        assert!(
            matches_lines(&expected, &actual),
            "`{}` printed:\n{}\n\nthe tutorial shows:\n{}",
            step.command,
            actual.join("\n"),
            expected.join("\n")
        );
    }
}
