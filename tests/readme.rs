//! README's command table is the command line's own `--help` text (issue 19): regenerate it
//! from this test's output when a subcommand changes.

use std::process::Command;

/// `(name, about)` of every subcommand `asa-lth ARGS --help` lists (without `help`).
fn commands(args: &[&str]) -> Vec<(String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_asa-lth"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| {
            let l = l.trim_start();
            let (name, about) = l.split_once(' ')?;
            (name != "help").then(|| (name.to_string(), about.trim().to_string()))
        })
        .collect()
}

#[test]
fn readme_command_table_is_the_help_text() {
    let mut table = String::from("| command | what it does |\n|---|---|\n");
    for (name, about) in commands(&[]) {
        if name == "asa" {
            for (sub, about) in commands(&["asa"]) {
                table += &format!("| `asa-lth asa {sub}` | {} |\n", about.replace('|', "\\|"));
            }
        } else {
            table += &format!("| `asa-lth {name}` | {} |\n", about.replace('|', "\\|"));
        }
    }
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let begin = "<!-- commands: generated from --help by tests/readme.rs -->\n";
    let end = "<!-- commands: end -->";
    let got = readme
        .split_once(begin)
        .and_then(|(_, rest)| rest.split_once(end))
        .map(|(t, _)| t)
        .unwrap_or("(no table between the markers)");
    assert!(
        got == table,
        "README's command table differs from --help; replace it with:\n{begin}{table}{end}"
    );
}
