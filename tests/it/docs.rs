//! Documentation that cannot drift from the code: the README's command synopsis and
//! `docs/cli.md` are generated from the command line's definition (clap) and compared here.
//! `LOGSTATS_BLESS=1 cargo test --test it docs::` rewrites both after a change to a flag.

use std::path::{Path, PathBuf};

use clap::{Arg, CommandFactory};
use logstats::cli::Cli;

use crate::common::binary;

/// The README line just before the synopsis block.
const SYNOPSIS_MARKER: &str =
    "<!-- synopsis: generated from src/cli.rs, checked by tests/it/docs.rs -->";

/// Synopsis lines are wrapped before this column.
const WIDTH: usize = 100;

#[test]
fn the_readme_synopsis_lists_every_flag_of_every_command() {
    let readme_path = project_file("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let (start, end) = synopsis_block(&readme);
    let expected = synopsis();
    if readme[start..end] != expected && blessing() {
        let updated = format!("{}{expected}{}", &readme[..start], &readme[end..]);
        std::fs::write(&readme_path, updated).unwrap();
        return;
    }
    assert_same_text(&readme[start..end], &expected, "the README's synopsis");
}

#[test]
fn docs_cli_md_is_the_help_of_every_command() {
    let path = project_file("docs/cli.md");
    let expected = cli_reference();
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current != expected && blessing() {
        std::fs::write(&path, expected).unwrap();
        return;
    }
    assert_same_text(&current, &expected, "docs/cli.md");
}

#[test]
fn completions_are_printed_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = std::process::Command::new(binary())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(output.status.success(), "{shell}: {output:?}");
        let script = String::from_utf8(output.stdout).unwrap();
        for word in ["ingest", "serve", "memory-limit", "api-keys"] {
            assert!(script.contains(word), "{shell}'s script lacks {word}");
        }
    }
    let output = std::process::Command::new(binary())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("possible values"));
}

/// Fails at the first line that differs, showing both versions of it.
#[track_caller]
fn assert_same_text(current: &str, expected: &str, what: &str) {
    let mut current_lines = current.lines();
    for (number, want) in expected.lines().enumerate() {
        let got = current_lines.next();
        assert_eq!(
            got,
            Some(want),
            "{what} differs from the command line at line {} (LOGSTATS_BLESS=1 rewrites it)",
            number + 1
        );
    }
    assert_eq!(current_lines.next(), None, "{what} has extra lines");
}

fn blessing() -> bool {
    std::env::var("LOGSTATS_BLESS").is_ok_and(|v| v == "1")
}

fn project_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The byte range of the synopsis block's contents (between its fences) in the README.
fn synopsis_block(readme: &str) -> (usize, usize) {
    let marker = readme
        .find(SYNOPSIS_MARKER)
        .expect("the README marks its synopsis");
    let fence = marker
        + readme[marker..]
            .find("```\n")
            .expect("a code block follows")
        + 4;
    let end = fence + readme[fence..].find("```\n").expect("the block ends");
    (fence, end)
}

/// One entry a subcommand, every visible flag in order, wrapped under the subcommand's name.
fn synopsis() -> String {
    let cli = Cli::command();
    let mut text = String::new();
    for command in cli.get_subcommands() {
        let head = format!("logstats {:<12}", command.get_name());
        let words = command
            .get_arguments()
            .filter(|arg| !arg.is_hide_set())
            .map(usage_word);
        let mut line = head.clone();
        for word in words {
            if line.len() + 1 + word.len() > WIDTH && line.len() > head.len() {
                text.push_str(line.trim_end());
                text.push('\n');
                line = " ".repeat(head.len());
            } else if line.len() > head.len() {
                line.push(' ');
            }
            line.push_str(&word);
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// `[--flag VALUE]`, `[--switch]`, or `NAME...` for a positional argument.
fn usage_word(arg: &Arg) -> String {
    let value = arg
        .get_value_names()
        .map(|names| names.join(" "))
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
    let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1);
    let word = match arg.get_long() {
        Some(long) if arg.get_action().takes_values() => format!("--{long} {value}"),
        Some(long) => format!("--{long}"),
        None if many => format!("{value}..."),
        None => value,
    };
    if arg.is_required_set() {
        word
    } else {
        format!("[{word}]")
    }
}

/// `logstats --help` and each subcommand's `--help`, as Markdown.
fn cli_reference() -> String {
    let mut cli = Cli::command_shown();
    cli.build();
    let mut text = String::from(
        "# Command line reference\n\nGenerated from `--help` (tests/it/docs.rs checks it; \
         `LOGSTATS_BLESS=1 cargo test --test it docs::` rewrites it).\n\n",
    );
    let help = cli.render_long_help().to_string();
    text.push_str(&format!("```\n{}```\n", without_trailing_blanks(&help)));
    for command in cli.get_subcommands_mut().filter(|c| c.get_name() != "help") {
        let name = command.get_name().to_string();
        let help = command.render_long_help().to_string();
        let help = without_trailing_blanks(&help);
        text.push_str(&format!("\n## logstats {name}\n\n```\n{help}```\n"));
    }
    text
}

fn without_trailing_blanks(text: &str) -> String {
    text.trim_end()
        .lines()
        .map(|line| format!("{}\n", line.trim_end()))
        .collect()
}

#[test]
fn every_relative_link_of_the_documentation_leads_to_a_file_and_heading_that_exist() {
    let root = project_file("");
    let mut files = vec![root.join("README.md")];
    for dir in ["docs", "bench"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let links = relative_links(&text);
        checked += links.len();
        for link in links {
            if let Err(why) = resolve_link(file, &link) {
                broken.push(format!("{}: ({link}) {why}", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(
        checked > 20,
        "only {checked} links found: the scan is broken"
    );
    // The check itself finds what is wrong.
    let readme = root.join("README.md");
    assert!(resolve_link(&readme, "docs/nowhere.md").is_err());
    assert!(resolve_link(&readme, "docs/spec.md#no-such-heading").is_err());
    assert!(resolve_link(&readme, "docs/spec.md#3-the-statistics-of-a-group").is_ok());
}

/// The targets of the Markdown links and images in `text` that are not URLs (`http:`, `mailto:`
/// ...), outside code blocks and code spans.
fn relative_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut in_code_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code_block = !in_code_block;
            continue;
        }
        if in_code_block {
            continue;
        }
        // Code spans hold examples, not links.
        let outside_code: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = outside_code.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = rest[..end].split_whitespace().next().unwrap_or("");
            if !target.contains(':') {
                links.push(target.to_string());
            }
            rest = &rest[end..];
        }
    }
    links
}

/// Checks that `link`, written in `file`, names an existing file, and a heading of it when it has
/// an anchor.
fn resolve_link(file: &Path, link: &str) -> Result<(), String> {
    let (path, anchor) = link.split_once('#').unwrap_or((link, ""));
    let target = match path {
        "" => file.to_path_buf(),
        path => file.parent().unwrap().join(path),
    };
    if !target.exists() {
        return Err(format!("{} does not exist", target.display()));
    }
    if anchor.is_empty() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&target).map_err(|e| e.to_string())?;
    let anchors = heading_anchors(&text);
    match anchors.iter().any(|a| a == anchor) {
        true => Ok(()),
        false => Err(format!("no heading #{anchor} in {}", target.display())),
    }
}

/// The anchors GitHub gives a document's headings: lower case, punctuation dropped, spaces as
/// `-`; a repeated one gets `-1`, `-2`...
fn heading_anchors(text: &str) -> Vec<String> {
    let mut anchors: Vec<String> = Vec::new();
    let mut in_code_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code_block = !in_code_block;
        }
        let Some(heading) = line.strip_prefix('#').filter(|_| !in_code_block) else {
            continue;
        };
        let slug: String = heading
            .trim_start_matches('#')
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let repeats = anchors
            .iter()
            .filter(|a| {
                **a == slug
                    || a.strip_prefix(&format!("{slug}-"))
                        .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .count();
        anchors.push(match repeats {
            0 => slug,
            n => format!("{slug}-{n}"),
        });
    }
    anchors
}
